"""What billing consumes from `booking.events`: what is owed (completed infusions and consults,
late cancellations, no-shows), fees waived, and booked courses (which plans finance)."""

from __future__ import annotations

from billing.service_layer import charges
from clinic_shared.consumer import Handler
from clinic_shared.contracts import booking
from clinic_shared.contracts.registry import topic_for

CONSUMED_TOPICS = [topic_for("booking")]
EVENT_HANDLERS: dict[str, Handler] = {
    booking.CourseBooked.event_type: charges.on_course_booked,
    booking.InfusionCompleted.event_type: charges.on_infusion_completed,
    booking.ConsultCompleted.event_type: charges.on_consult_completed,
    booking.AppointmentCancelled.event_type: charges.on_appointment_cancelled,
    booking.AppointmentNoShow.event_type: charges.on_no_show,
    booking.FeeWaived.event_type: charges.on_fee_waived,
}

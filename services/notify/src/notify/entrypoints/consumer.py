"""What notify consumes: every other service's events. One explicit registry of handlers;
the two that ask booking for the intake's medication classes get the directory."""

from __future__ import annotations

from functools import partial

from clinic_shared.consumer import Handler
from clinic_shared.contracts import billing, booking, waitlist
from clinic_shared.contracts.registry import topic_for
from notify.domain.ports import PatientDirectory
from notify.service_layer import scheduling

CONSUMED_TOPICS = [topic_for("booking"), topic_for("waitlist"), topic_for("billing")]


def event_handlers(directory: PatientDirectory) -> dict[str, Handler]:
    return {
        booking.PatientRegistered.event_type: scheduling.on_patient_registered,
        booking.CourseBooked.event_type: scheduling.on_course_booked,
        booking.AppointmentBooked.event_type: partial(
            scheduling.on_appointment_booked, directory=directory
        ),
        booking.AppointmentRescheduled.event_type: partial(
            scheduling.on_appointment_rescheduled, directory=directory
        ),
        booking.AppointmentCancelled.event_type: scheduling.on_appointment_cancelled,
        booking.AppointmentCheckedIn.event_type: scheduling.on_checked_in,
        booking.AppointmentNoShow.event_type: scheduling.on_no_show,
        booking.InfusionCompleted.event_type: scheduling.on_infusion_completed,
        booking.ConsultCompleted.event_type: scheduling.on_consult_completed,
        waitlist.OfferMade.event_type: scheduling.on_offer_made,
        waitlist.OfferAccepted.event_type: scheduling.on_offer_accepted,
        waitlist.OfferBooked.event_type: scheduling.on_offer_booked,
        waitlist.OfferClosed.event_type: scheduling.on_offer_closed,
        billing.PaymentSucceeded.event_type: scheduling.on_payment_succeeded,
        billing.PaymentFailed.event_type: scheduling.on_payment_failed,
        billing.PlanDelinquent.event_type: scheduling.on_plan_delinquent,
    }

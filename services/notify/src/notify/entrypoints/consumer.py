"""What notify consumes: every other service's events. One explicit registry of handlers."""

from __future__ import annotations

from clinic_shared.consumer import Handler
from clinic_shared.contracts import booking
from clinic_shared.contracts.registry import topic_for
from notify.service_layer import handlers

CONSUMED_TOPICS = [topic_for("booking"), topic_for("waitlist"), topic_for("billing")]
EVENT_HANDLERS: dict[str, Handler] = {
    booking.PatientRegistered.event_type: handlers.on_patient_registered,
}

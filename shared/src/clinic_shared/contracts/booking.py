"""Events booking publishes on `booking.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from clinic_shared.contracts.registry import contract
from clinic_shared.envelope import IntegrationEvent


class BookingEvent(IntegrationEvent):
    producer: ClassVar[str] = "booking"


@contract
class PatientRegistered(BookingEvent):
    """A patient record was created. Carries no name, birth date or contact data."""

    event_type: ClassVar[str] = "booking.patient.registered.v1"

    patient_id: UUID
    registered_at: datetime
    registered_by: Literal["patient", "staff"]

    def aggregate_key(self) -> str:
        return str(self.patient_id)

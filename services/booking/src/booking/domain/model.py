"""Booking's pure model. No I/O, no ORM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID


class RegisteredBy(StrEnum):
    PATIENT = "patient"
    STAFF = "staff"


@dataclass(frozen=True)
class PatientRegistered:
    """Domain event: a patient record was created."""

    patient_id: UUID
    registered_at: datetime
    registered_by: RegisteredBy


class InvalidPatient(ValueError):
    pass


@dataclass
class Patient:
    id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    registered_at: datetime
    registered_by: RegisteredBy
    events: list[PatientRegistered] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def register(
        cls,
        *,
        patient_id: UUID,
        first_name: str,
        last_name: str,
        date_of_birth: date,
        email: str,
        phone: str,
        registered_by: RegisteredBy,
        now: datetime,
    ) -> Patient:
        if date_of_birth >= now.date():
            raise InvalidPatient("date of birth must be in the past")
        patient = cls(
            id=patient_id,
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            date_of_birth=date_of_birth,
            email=email.strip().lower(),
            phone=phone.strip(),
            registered_at=now,
            registered_by=registered_by,
        )
        patient.events.append(PatientRegistered(patient_id, now, registered_by))
        return patient

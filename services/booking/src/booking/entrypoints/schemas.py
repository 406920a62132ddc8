"""Booking's HTTP request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

from booking.domain.model import Condition, MedicationClass
from clinic_shared.http import DateText, DateTimeText

E164 = r"^\+[1-9]\d{7,14}$"


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: DateText
    email: EmailStr
    phone: str = Field(pattern=E164, description="E.164, e.g. +15035550100")


class PatientOut(BaseModel):
    id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    registered_at: datetime
    registered_by: Literal["patient", "staff"]


# Intake

ICD10 = r"^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$"
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class MedicationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    medication_class: MedicationClass = Field(alias="class")


class IntakeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: Condition | None = Field(
        default=None, description="`mood` or `pain`: which protocol family applies"
    )
    screening: dict[FlagName, StrictBool] = Field(
        max_length=64,
        description="Yes/no screening answers; every blocking flag of the policy must be answered",
    )
    medications: list[MedicationIn] = Field(default_factory=list, max_length=100)
    diagnosis_codes: list[Annotated[str, StringConstraints(pattern=ICD10)]] = Field(
        default_factory=list, max_length=20, description="ICD-10-CM codes, e.g. F33.2"
    )
    treating_clinician: str | None = Field(default=None, max_length=200)


class IntakeOut(BaseModel):
    patient_id: UUID
    condition: Condition | None
    screening: dict[str, bool]
    medications: list[MedicationIn]
    diagnosis_codes: list[str]
    treating_clinician: str | None
    status: Literal["pending", "cleared"]
    blocking_flags: list[str]
    submitted_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None
    override_reason: str | None


class ClearanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    diagnosis_confirmed: StrictBool = Field(
        description="The diagnosis was confirmed with the patient's treating clinician"
    )
    override_reason: str | None = Field(
        default=None,
        max_length=1000,
        description="Required when a blocking screening flag is set: why it is overridden",
    )


# Calendar


class SlotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: DateTimeText = Field(
        description="RFC 3339 with offset; without one, clinic-local time (422 if it does not "
        "exist or is ambiguous)"
    )
    chair_id: str = Field(min_length=1, max_length=32)
    end: DateTimeText | None = Field(
        default=None,
        description="Ignored: the end follows from the protocol and the patient's history. "
        "Accepted so that an availability option can be posted back as it came.",
    )


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    chair_id: str


class CourseOptionOut(BaseModel):
    slots: list[SlotOut]


class AvailabilityOut(BaseModel):
    protocol: str
    first_visit: bool
    options: list[CourseOptionOut]


class CourseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: UUID
    protocol: str = Field(min_length=1, max_length=32)
    slots: list[SlotIn] = Field(min_length=1, max_length=20)


class AppointmentOut(BaseModel):
    id: UUID
    course_id: UUID | None
    patient_id: UUID | None
    protocol: str
    family: str
    sequence: int
    chair_id: str
    start: datetime
    end: datetime
    first_visit: bool
    status: Literal["booked", "held", "checked_in", "completed", "cancelled", "no_show", "released"]
    cancelled_at: datetime | None
    cancel_timing: Literal["on_time", "late"] | None
    fee_cents: int
    fee_waived: bool
    checked_in_at: datetime | None
    completed_at: datetime | None
    ride_confirmed: bool


class CourseOut(BaseModel):
    id: UUID
    patient_id: UUID
    protocol: str
    family: str
    booked_at: datetime
    booked_by: str
    hold_id: UUID | None
    offer_id: UUID | None
    appointments: list[AppointmentOut]


class AppointmentListOut(BaseModel):
    appointments: list[AppointmentOut]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)
    acknowledge_late_fee: StrictBool = False
    waive_fee_reason: str | None = Field(
        default=None, max_length=1000, description="Staff only: waive the late fee, with why"
    )


class CancelOut(BaseModel):
    status: Literal["cancelled"]
    timing: Literal["on_time", "late"]
    fee_cents: int
    fee_waived: bool
    hours_before: float
    released_appointment_ids: list[UUID]
    hold_id: UUID | None
    held_appointment_ids: list[UUID]


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: DateTimeText
    chair_id: str = Field(min_length=1, max_length=32)
    acknowledge_late_fee: StrictBool = False
    waive_fee_reason: str | None = Field(default=None, max_length=1000)


class RescheduleOut(AppointmentOut):
    timing: Literal["on_time", "late"]
    change_fee_cents: int


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    infusion_minutes: StrictInt | None = Field(default=None, ge=1, le=24 * 60)


class NoShowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    waive_fee_reason: str | None = Field(default=None, max_length=1000)


class WaiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=1000)


class RideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirmed: StrictBool
    driver_name: str | None = Field(default=None, max_length=200)
    driver_phone: str | None = Field(default=None, pattern=E164)


class HoldOut(BaseModel):
    id: UUID
    source_course_id: UUID
    protocol: str
    family: str
    kind: Literal["series", "single"]
    status: Literal["awaiting_review", "released", "closed"]
    placed_at: datetime
    released_at: datetime | None
    slots: list[AppointmentOut]


class HoldListOut(BaseModel):
    holds: list[HoldOut]


# Internal API (service role)


class PatientContactOut(BaseModel):
    """What notify and billing may ask for: contact details and what reminders and
    superbills need. Never travels in events."""

    id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    condition: Condition | None
    medication_classes: list[MedicationClass]
    diagnosis_codes: list[str]

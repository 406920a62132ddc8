"""Events booking publishes on `booking.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

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


Timing = Literal["on_time", "late"]
Actor = Literal["patient", "staff", "system"]
FamilyName = Literal["mood", "pain", "consult"]


class SlotFact(BaseModel):
    """One occupied slot: which appointment, which chair (or consult resource), when."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    appointment_id: UUID
    resource_id: str
    start: datetime
    end: datetime


@contract
class IntakeCleared(BookingEvent):
    """A clinician cleared the patient's intake; induction courses may now be booked."""

    event_type: ClassVar[str] = "booking.intake.cleared.v1"

    patient_id: UUID
    cleared_at: datetime

    def aggregate_key(self) -> str:
        return str(self.patient_id)


@contract
class CourseBooked(BookingEvent):
    """A whole course was booked at once. Keyed by course: its appointments' events follow it."""

    event_type: ClassVar[str] = "booking.course.booked.v1"

    course_id: UUID
    patient_id: UUID
    protocol: str
    family: FamilyName
    slots: list[SlotFact]
    booked_at: datetime
    booked_by: Actor
    hold_id: UUID | None = None
    """Set when the course was booked from slots held for the waitlist."""
    offer_id: UUID | None = None

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class AppointmentBooked(BookingEvent):
    """One appointment of a course, with what reminders and billing need to know about it."""

    event_type: ClassVar[str] = "booking.appointment.booked.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    protocol: str
    family: FamilyName
    sequence: int
    """1 for the course's initial appointment."""
    resource_id: str
    start: datetime
    end: datetime
    first_visit: bool

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class AppointmentRescheduled(BookingEvent):
    event_type: ClassVar[str] = "booking.appointment.rescheduled.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    previous_start: datetime
    start: datetime
    end: datetime
    resource_id: str
    timing: Timing
    fee_cents: int
    """The late-change fee owed; 0 when on time or waived."""
    fee_waived: bool
    rescheduled_at: datetime
    rescheduled_by: Actor

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class AppointmentCancelled(BookingEvent):
    event_type: ClassVar[str] = "booking.appointment.cancelled.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    start: datetime
    cancelled_at: datetime
    cancelled_by: Actor
    timing: Timing
    seconds_before_start: int
    fee_cents: int
    """The late-cancellation fee owed; 0 when on time or waived."""
    fee_waived: bool
    reason: Literal["cancelled", "series_released"]
    """`series_released`: freed because the course's initial appointment was cancelled (no fee)."""

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class HoldPlaced(BookingEvent):
    """Released slots are held for the waitlist: no one else can book them meanwhile."""

    event_type: ClassVar[str] = "booking.hold.placed.v1"

    hold_id: UUID
    source_course_id: UUID
    slots: list[SlotFact]
    placed_at: datetime
    awaiting_review: bool
    """True under `series_release: scheduler_review` until a scheduler confirms the release."""

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class BlockReleased(BookingEvent):
    """Held slots are handed to the waitlist: a course's remaining series, or a single slot."""

    event_type: ClassVar[str] = "booking.block.released.v1"

    hold_id: UUID
    source_course_id: UUID
    protocol: str
    family: FamilyName
    kind: Literal["series", "single"]
    slots: list[SlotFact]
    released_at: datetime

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class HoldReleased(BookingEvent):
    """Held slots nobody took are open to everybody again."""

    event_type: ClassVar[str] = "booking.hold.released.v1"

    hold_id: UUID
    appointment_ids: list[UUID]
    released_at: datetime
    reason: Literal["unclaimed", "withdrawn"]

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class HoldBooked(BookingEvent):
    """Reply to an accepted waitlist offer: the held slots are now the patient's course."""

    event_type: ClassVar[str] = "booking.hold.booked.v1"

    hold_id: UUID
    offer_id: UUID
    patient_id: UUID
    course_id: UUID
    appointment_ids: list[UUID]
    booked_at: datetime

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class HoldBookingRejected(BookingEvent):
    """Reply to an accepted waitlist offer that could not be booked; nothing changed."""

    event_type: ClassVar[str] = "booking.hold.booking_rejected.v1"

    hold_id: UUID
    offer_id: UUID
    patient_id: UUID
    reason: Literal[
        "hold_not_found",
        "slots_not_held",
        "patient_not_found",
        "intake_not_cleared",
        "first_visit_does_not_fit",
        "slot_in_past",
        "protocol_mismatch",
    ]
    rejected_at: datetime

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class AppointmentCheckedIn(BookingEvent):
    event_type: ClassVar[str] = "booking.appointment.checked_in.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    checked_in_at: datetime

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class InfusionCompleted(BookingEvent):
    """An infusion was given: billing charges it by family and lifetime ordinal."""

    event_type: ClassVar[str] = "booking.infusion.completed.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    protocol: str
    family: Literal["mood", "pain"]
    ordinal: int
    """The patient's lifetime infusion count in this family, this one included."""
    start: datetime
    completed_at: datetime
    infusion_minutes: int

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class ConsultCompleted(BookingEvent):
    event_type: ClassVar[str] = "booking.consult.completed.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    protocol: str
    start: datetime
    completed_at: datetime

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class AppointmentNoShow(BookingEvent):
    event_type: ClassVar[str] = "booking.appointment.no_show.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    start: datetime
    marked_at: datetime
    fee_cents: int
    fee_waived: bool

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class FeeWaived(BookingEvent):
    """Staff waived a fee after the fact (the reason stays in booking's audit log)."""

    event_type: ClassVar[str] = "booking.fee.waived.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    fee_kind: Literal["late_cancellation", "no_show"]
    waived_at: datetime

    def aggregate_key(self) -> str:
        return str(self.course_id)


@contract
class RideConfirmed(BookingEvent):
    """The patient's ride home is (or is no longer) confirmed. No driver details travel."""

    event_type: ClassVar[str] = "booking.ride.confirmed.v1"

    appointment_id: UUID
    course_id: UUID
    patient_id: UUID
    confirmed: bool
    confirmed_at: datetime

    def aggregate_key(self) -> str:
        return str(self.course_id)

"""Booking's pure model. No I/O, no ORM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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


# Intake


class Condition(StrEnum):
    MOOD = "mood"
    PAIN = "pain"


class MedicationClass(StrEnum):
    BENZODIAZEPINE = "benzodiazepine"
    LAMOTRIGINE = "lamotrigine"
    CANNABIS = "cannabis"
    OTHER = "other"


class IntakeStatus(StrEnum):
    PENDING = "pending"
    """Answered; waiting for a clinician."""
    CLEARED = "cleared"


@dataclass(frozen=True)
class Medication:
    name: str
    medication_class: MedicationClass


class IntakeError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class IntakeCleared:
    patient_id: UUID
    cleared_at: datetime


@dataclass
class Intake:
    """Screening answers, medications and condition; a clinician's clearance gates inductions.

    Changing the answers after clearance withdraws it: the clinician must look again.
    """

    patient_id: UUID
    condition: Condition | None
    screening: dict[str, bool]
    medications: list[Medication]
    diagnosis_codes: list[str]
    treating_clinician: str | None
    status: IntakeStatus
    submitted_at: datetime
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    override_reason: str | None = None
    events: list[object] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def submit(
        cls,
        *,
        patient_id: UUID,
        condition: Condition | None,
        screening: dict[str, bool],
        medications: list[Medication],
        diagnosis_codes: list[str],
        treating_clinician: str | None,
        now: datetime,
    ) -> Intake:
        return cls(
            patient_id=patient_id,
            condition=condition,
            screening=dict(screening),
            medications=list(medications),
            diagnosis_codes=[code.strip().upper() for code in diagnosis_codes],
            treating_clinician=treating_clinician,
            status=IntakeStatus.PENDING,
            submitted_at=now,
        )

    def blocking_flags(self, blocking: Sequence[str]) -> list[str]:
        return [flag for flag in blocking if self.screening.get(flag, False)]

    @property
    def is_cleared(self) -> bool:
        return self.status is IntakeStatus.CLEARED

    def clear(
        self,
        *,
        blocking: Sequence[str],
        diagnosis_confirmed: bool,
        override_reason: str | None,
        clinician_id: str,
        now: datetime,
    ) -> list[str]:
        """Clear the intake; returns the blocking flags the clinician overrode (audited)."""
        if self.condition is None:
            raise IntakeError("condition_missing", "The intake names no condition (mood or pain).")
        if not diagnosis_confirmed:
            raise IntakeError(
                "diagnosis_not_confirmed",
                "The diagnosis must be confirmed with the patient's treating clinician.",
            )
        flags = self.blocking_flags(blocking)
        reason = (override_reason or "").strip()
        if flags and not reason:
            raise IntakeError(
                "blocking_flags",
                f"Screening flags block clearance until overridden with a reason: {flags}",
            )
        self.status = IntakeStatus.CLEARED
        self.cleared_at = now
        self.cleared_by = clinician_id
        self.override_reason = reason if flags else None
        self.events.append(IntakeCleared(self.patient_id, now))
        return flags


# Courses and appointments


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    HELD = "held"
    """Released by its patient and held for the waitlist: nobody else may book it."""
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    RELEASED = "released"
    """A held slot nobody took: open to everybody again."""


LIVE_STATUSES = frozenset(
    {
        AppointmentStatus.BOOKED,
        AppointmentStatus.HELD,
        AppointmentStatus.CHECKED_IN,
        AppointmentStatus.COMPLETED,
    }
)
"""Statuses that occupy their chair (the database forbids two of them overlapping)."""


class Timing(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"


class Actor(StrEnum):
    PATIENT = "patient"
    STAFF = "staff"
    SYSTEM = "system"


class InvalidTransition(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class CancellationTerms:
    """What cancelling (or moving) an appointment costs at a given instant."""

    timing: Timing
    fee_cents: int
    seconds_before: int

    @property
    def hours_before(self) -> float:
        return round(self.seconds_before / 3600, 2)


def cancellation_terms(
    start: datetime, now: datetime, window: timedelta, late_fee_cents: int
) -> CancellationTerms:
    """Elapsed time between instants decides: exactly `window` before start is still on time."""
    remaining = start - now
    seconds = int(remaining.total_seconds() // 1)
    if remaining >= window:
        return CancellationTerms(Timing.ON_TIME, 0, seconds)
    return CancellationTerms(Timing.LATE, late_fee_cents, seconds)


@dataclass
class Appointment:
    id: UUID
    course_id: UUID | None
    patient_id: UUID | None
    hold_id: UUID | None
    protocol: str
    family: str
    sequence: int
    resource_id: str
    start: datetime
    end: datetime
    first_visit: bool
    status: AppointmentStatus
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by: Actor | None = None
    cancel_timing: Timing | None = None
    cancel_reason: str | None = None
    fee_cents: int = 0
    fee_waived: bool = False
    checked_in_at: datetime | None = None
    completed_at: datetime | None = None
    infusion_minutes: int | None = None
    ride_confirmed: bool = False
    ride_confirmed_at: datetime | None = None
    driver_name: str | None = None
    driver_phone: str | None = None

    def _require(self, *allowed: AppointmentStatus, action: str) -> None:
        if self.status not in allowed:
            raise InvalidTransition(
                "invalid_state",
                f"Cannot {action} an appointment that is {self.status.value}.",
            )

    def cancel(
        self,
        *,
        terms: CancellationTerms,
        by: Actor,
        reason: str | None,
        waive_fee: bool,
        now: datetime,
    ) -> None:
        self._require(AppointmentStatus.BOOKED, action="cancel")
        if now >= self.start:
            raise InvalidTransition(
                "appointment_started",
                "The appointment has started; staff record a no-show or a check-in instead.",
            )
        self.status = AppointmentStatus.CANCELLED
        self.cancelled_at = now
        self.cancelled_by = by
        self.cancel_timing = terms.timing
        self.cancel_reason = reason
        self.fee_waived = waive_fee and terms.fee_cents > 0
        self.fee_cents = 0 if self.fee_waived else terms.fee_cents

    def release_with_series(self, now: datetime) -> None:
        """Freed because the course's initial appointment was cancelled: no fee of its own."""
        self._require(AppointmentStatus.BOOKED, action="release")
        self.status = AppointmentStatus.CANCELLED
        self.cancelled_at = now
        self.cancelled_by = Actor.SYSTEM
        self.cancel_timing = Timing.ON_TIME

    def check_in(self, now: datetime) -> None:
        self._require(AppointmentStatus.BOOKED, action="check in")
        self.status = AppointmentStatus.CHECKED_IN
        self.checked_in_at = now

    def complete(self, now: datetime, infusion_minutes: int | None) -> None:
        self._require(AppointmentStatus.CHECKED_IN, action="complete")
        self.status = AppointmentStatus.COMPLETED
        self.completed_at = now
        self.infusion_minutes = infusion_minutes

    def mark_no_show(self, *, now: datetime, grace: timedelta, fee_cents: int, waive: bool) -> None:
        self._require(AppointmentStatus.BOOKED, action="mark as a no-show")
        if now < self.start + grace:
            raise InvalidTransition(
                "too_early_for_no_show",
                f"A no-show can be recorded from {int(grace.total_seconds() // 60)} minutes "
                "after the start.",
            )
        self.status = AppointmentStatus.NO_SHOW
        self.fee_waived = waive and fee_cents > 0
        self.fee_cents = 0 if self.fee_waived else fee_cents

    def waive_fee(self) -> str:
        """Waive the fee this appointment incurred; returns which fee it was."""
        if self.fee_cents <= 0 or self.fee_waived:
            raise InvalidTransition("no_fee", "This appointment carries no fee to waive.")
        if self.status is AppointmentStatus.NO_SHOW:
            kind = "no_show"
        elif self.cancel_timing is Timing.LATE:
            kind = "late_cancellation"
        else:
            raise InvalidTransition("no_fee", "This appointment carries no fee to waive.")
        self.fee_waived = True
        self.fee_cents = 0
        return kind

    def confirm_ride(
        self, *, confirmed: bool, driver_name: str | None, driver_phone: str | None, now: datetime
    ) -> None:
        self._require(
            AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN, action="confirm a ride for"
        )
        self.ride_confirmed = confirmed
        self.ride_confirmed_at = now
        self.driver_name = driver_name if confirmed else None
        self.driver_phone = driver_phone if confirmed else None


@dataclass
class Course:
    id: UUID
    patient_id: UUID
    protocol: str
    family: str
    booked_at: datetime
    booked_by: Actor
    hold_id: UUID | None = None
    offer_id: UUID | None = None


class HoldKind(StrEnum):
    SERIES = "series"
    SINGLE = "single"


class HoldStatus(StrEnum):
    AWAITING_REVIEW = "awaiting_review"
    """`series_release: scheduler_review`: held, not yet handed to the waitlist."""
    RELEASED = "released"
    """Handed to the waitlist; its slots are held until booked or unclaimed."""
    CLOSED = "closed"
    """Every slot was booked for a waitlisted patient or opened to everybody."""


@dataclass
class Hold:
    id: UUID
    source_course_id: UUID
    protocol: str
    family: str
    kind: HoldKind
    status: HoldStatus
    placed_at: datetime
    released_at: datetime | None = None


# Domain events: what happened, in booking's own terms (integration.py translates them).


@dataclass(frozen=True)
class CourseBooked:
    course: Course
    appointments: Sequence[Appointment]


@dataclass(frozen=True)
class AppointmentCancelled:
    appointment: Appointment
    seconds_before: int
    series_released: bool = False


@dataclass(frozen=True)
class AppointmentRescheduled:
    appointment: Appointment
    previous_start: datetime
    terms: CancellationTerms
    fee_cents: int
    fee_waived: bool
    by: Actor
    at: datetime


@dataclass(frozen=True)
class HoldPlaced:
    hold: Hold
    slots: Sequence[Appointment]


@dataclass(frozen=True)
class BlockReleased:
    hold: Hold
    slots: Sequence[Appointment]


@dataclass(frozen=True)
class HoldReleased:
    hold_id: UUID
    appointment_ids: Sequence[UUID]
    reason: str
    at: datetime


@dataclass(frozen=True)
class HoldBooked:
    hold_id: UUID
    offer_id: UUID
    course: Course
    appointment_ids: Sequence[UUID]


@dataclass(frozen=True)
class HoldBookingRejected:
    hold_id: UUID
    offer_id: UUID
    patient_id: UUID
    reason: str
    at: datetime


@dataclass(frozen=True)
class AppointmentCheckedIn:
    appointment: Appointment


@dataclass(frozen=True)
class AppointmentCompleted:
    appointment: Appointment
    ordinal: int | None
    """The lifetime infusion count in the family, this one included; None for a consult."""


@dataclass(frozen=True)
class AppointmentNoShow:
    appointment: Appointment
    at: datetime


@dataclass(frozen=True)
class FeeWaived:
    appointment: Appointment
    fee_kind: str
    at: datetime


@dataclass(frozen=True)
class RideConfirmed:
    appointment: Appointment

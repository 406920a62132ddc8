"""Booking's repositories over SQL: statements, not identity-map round trips."""

from __future__ import annotations

import functools
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from booking.adapters.orm import AppointmentRow, AuditRow, CourseRow, HoldRow, IntakeRow, PatientRow
from booking.domain.model import (
    LIVE_STATUSES,
    Actor,
    Appointment,
    AppointmentStatus,
    Condition,
    Course,
    Hold,
    HoldKind,
    HoldStatus,
    Intake,
    IntakeStatus,
    Medication,
    MedicationClass,
    Patient,
    RegisteredBy,
    Timing,
)

PATIENT = PatientRow.__table__


class DuplicatePatient(Exception):
    """A patient with this id was stored first, possibly by a concurrent request."""


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, patient: Patient) -> None:
        try:
            await self._insert(patient)
        except IntegrityError as exc:
            raise DuplicatePatient(str(patient.id)) from exc

    async def _insert(self, patient: Patient) -> None:
        await self._session.execute(
            sa.insert(PATIENT).values(
                id=patient.id,
                first_name=patient.first_name,
                last_name=patient.last_name,
                date_of_birth=patient.date_of_birth,
                email=patient.email,
                phone=patient.phone,
                registered_at=patient.registered_at,
                registered_by=patient.registered_by.value,
            )
        )

    async def get(self, patient_id: UUID) -> Patient | None:
        row = (
            (await self._session.execute(sa.select(PATIENT).where(PATIENT.c.id == patient_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        fields = dict(row)
        return Patient(**fields | {"registered_by": RegisteredBy(fields["registered_by"])})

    async def lock(self, patient_id: UUID) -> None:
        """Serialize changes that count a patient's history (a row lock; SQLite's transactions
        are serial already)."""
        await self._session.execute(
            sa.select(PATIENT.c.id).where(PATIENT.c.id == patient_id).with_for_update()
        )

    async def exists(self, patient_id: UUID) -> bool:
        found = await self._session.execute(
            sa.select(PATIENT.c.id).where(PATIENT.c.id == patient_id)
        )
        return found.first() is not None

    async def booking_facts(self, patient_id: UUID) -> PatientFacts | None:
        """What booking needs to know about a patient, in one query; None when there is no
        such patient."""
        found = await self._session.execute(_PATIENT_FACTS, {"patient_id": patient_id})
        row = found.first()
        if row is None:
            return None
        return PatientFacts(
            condition=Condition(row.condition) if row.condition else None,
            intake_cleared=row.status == IntakeStatus.CLEARED.value,
            has_infusion=bool(row.has_infusion),
        )


@dataclass(frozen=True)
class PatientFacts:
    condition: Condition | None
    """From the intake; None without an intake or a condition on it."""
    intake_cleared: bool
    has_infusion: bool
    """Whether the patient already has an infusion visit (booked, given or under way)."""


class SlotTaken(Exception):
    """Another live occupancy overlaps: the database refused the insert or the move."""


@dataclass(frozen=True)
class Clash:
    """A live occupancy in the way of a booking or a move."""

    id: UUID
    taken: bool
    """It holds a requested resource at an overlapping time."""
    own: bool
    """It is the same patient's, at an overlapping time."""


_OVERLAP_SQLSTATES = frozenset({"23P01", "40P01"})
_RESOURCE_LOCK_NAMESPACE = 0x0B00C


def is_overlap_refusal(exc: DBAPIError) -> bool:
    """An exclusion violation or the deadlock a contended burst can end in: both mean taken."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in _OVERLAP_SQLSTATES


INTAKE = IntakeRow.__table__
COURSE = CourseRow.__table__
HOLD = HoldRow.__table__
APPOINTMENT = AppointmentRow.__table__
AUDIT = AuditRow.__table__


def _among(column: sa.ColumnElement[str], values: Iterable[str]) -> sa.ColumnElement[bool]:
    """`column IN (...)` over constants of ours, written into the SQL text: compiled once and
    cached, with no list parameter to expand on each execution (which costs a short query a
    third of its time in SQLAlchemy)."""
    constants = sorted(values)
    if any("'" in value for value in constants):
        raise ValueError(f"not a plain constant: {constants}")
    return column.in_([sa.literal_column(f"'{value}'") for value in constants])


_LIVE = _among(APPOINTMENT.c.status, (status.value for status in LIVE_STATUSES))
_PATIENT_FACTS = (
    sa.select(
        INTAKE.c.condition,
        INTAKE.c.status,
        sa.exists()
        .where(
            APPOINTMENT.c.patient_id == PATIENT.c.id,
            _among(APPOINTMENT.c.family, ("mood", "pain")),
            _among(
                APPOINTMENT.c.status,
                (
                    AppointmentStatus.BOOKED.value,
                    AppointmentStatus.CHECKED_IN.value,
                    AppointmentStatus.COMPLETED.value,
                ),
            ),
        )
        .label("has_infusion"),
    )
    .select_from(PATIENT.outerjoin(INTAKE, INTAKE.c.patient_id == PATIENT.c.id))
    .where(PATIENT.c.id == sa.bindparam("patient_id"))
)
_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:ns, :key)")
_INSERT_COURSE = sa.insert(COURSE)


@functools.cache
def _clash_query(slots: int, for_patient: bool) -> sa.Select[tuple[UUID, bool, bool]]:
    """`CalendarRepository.clashes` for so many slots: built once per shape, then only bound
    (building it costs more than running it; a course has at most twenty slots)."""

    def overlaps(index: int) -> sa.ColumnElement[bool]:
        return sa.and_(
            APPOINTMENT.c.start_at < sa.bindparam(f"end_{index}"),
            APPOINTMENT.c.end_at > sa.bindparam(f"start_{index}"),
        )

    taken = sa.or_(
        *[
            sa.and_(APPOINTMENT.c.resource_id == sa.bindparam(f"resource_{index}"), overlaps(index))
            for index in range(slots)
        ]
    )
    own = (
        sa.and_(
            APPOINTMENT.c.patient_id == sa.bindparam("patient_id"),
            sa.or_(*[overlaps(index) for index in range(slots)]),
        )
        if for_patient
        else sa.false()
    )
    return sa.select(APPOINTMENT.c.id, taken.label("taken"), own.label("own")).where(
        _LIVE, sa.or_(taken, own)
    )


class IntakeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, patient_id: UUID, *, for_update: bool = False) -> Intake | None:
        query = sa.select(INTAKE).where(INTAKE.c.patient_id == patient_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().first()
        if row is None:
            return None
        fields = dict(row)
        return Intake(
            **fields
            | {
                "condition": Condition(fields["condition"]) if fields["condition"] else None,
                "status": IntakeStatus(fields["status"]),
                "medications": [
                    Medication(m["name"], MedicationClass(m["class"]))
                    for m in fields["medications"]
                ],
            }
        )

    async def save(self, intake: Intake) -> None:
        values = {
            "condition": intake.condition.value if intake.condition else None,
            "screening": intake.screening,
            "medications": [
                {"name": m.name, "class": m.medication_class.value} for m in intake.medications
            ],
            "diagnosis_codes": intake.diagnosis_codes,
            "treating_clinician": intake.treating_clinician,
            "status": intake.status.value,
            "submitted_at": intake.submitted_at,
            "cleared_at": intake.cleared_at,
            "cleared_by": intake.cleared_by,
            "override_reason": intake.override_reason,
        }
        updated = await self._session.execute(
            sa.update(INTAKE).where(INTAKE.c.patient_id == intake.patient_id).values(**values)
        )
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            await self._session.execute(
                sa.insert(INTAKE).values(patient_id=intake.patient_id, **values)
            )


def _appointment(row: sa.RowMapping) -> Appointment:
    fields = dict(row)
    start, end = fields.pop("start_at"), fields.pop("end_at")
    return Appointment(
        **fields
        | {
            "start": start,
            "end": end,
            "status": AppointmentStatus(fields["status"]),
            "cancelled_by": Actor(fields["cancelled_by"]) if fields["cancelled_by"] else None,
            "cancel_timing": Timing(fields["cancel_timing"]) if fields["cancel_timing"] else None,
        }
    )


def _appointment_values(appointment: Appointment) -> dict[str, object]:
    values = {
        name: getattr(appointment, name)
        for name in (
            "course_id",
            "patient_id",
            "hold_id",
            "protocol",
            "family",
            "sequence",
            "resource_id",
            "first_visit",
            "created_at",
            "cancelled_at",
            "cancel_reason",
            "fee_cents",
            "fee_waived",
            "checked_in_at",
            "completed_at",
            "infusion_minutes",
            "ride_confirmed",
            "ride_confirmed_at",
            "driver_name",
            "driver_phone",
        )
    }
    return values | {
        "start_at": appointment.start,
        "end_at": appointment.end,
        "status": appointment.status.value,
        "cancelled_by": appointment.cancelled_by.value if appointment.cancelled_by else None,
        "cancel_timing": appointment.cancel_timing.value if appointment.cancel_timing else None,
    }


class CalendarRepository:
    """Courses, appointments (booked or held occupancies) and holds."""

    def __init__(self, session: AsyncSession, *, postgres: bool) -> None:
        self._session = session
        self._postgres = postgres

    async def lock_resources(self, resource_ids: Iterable[str]) -> None:
        """Serialize writers per chair, always in the same order, so a burst never deadlocks.

        On SQLite every transaction already holds the database's single write lock.
        """
        if not self._postgres:
            return
        for resource_id in sorted(set(resource_ids)):
            key = zlib.crc32(resource_id.encode()) - 2**31
            await self._session.execute(
                _ADVISORY_LOCK, {"ns": _RESOURCE_LOCK_NAMESPACE, "key": key}
            )

    async def clashes(
        self, patient_id: UUID | None, slots: Sequence[tuple[str, datetime, datetime]]
    ) -> list[Clash]:
        """Live occupancies in the way of the half-open slots, found in one query: those that
        hold a slot's resource at an overlapping time (`taken`) and the patient's own at an
        overlapping time (`own`: one body, one chair)."""
        if not slots:
            return []
        params: dict[str, object] = {"patient_id": patient_id}
        for index, (resource_id, start, end) in enumerate(slots):
            params[f"resource_{index}"] = resource_id
            params[f"start_{index}"], params[f"end_{index}"] = start, end
        found = await self._session.execute(
            _clash_query(len(slots), patient_id is not None), params
        )
        return [Clash(row.id, bool(row.taken), bool(row.own)) for row in found]

    async def busy(
        self, resource_ids: Iterable[str], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        rows = await self._session.execute(
            sa.select(APPOINTMENT.c.resource_id, APPOINTMENT.c.start_at, APPOINTMENT.c.end_at)
            .where(
                APPOINTMENT.c.resource_id.in_(list(resource_ids)),
                _LIVE,
                APPOINTMENT.c.start_at < end,
                APPOINTMENT.c.end_at > start,
            )
            .order_by(APPOINTMENT.c.start_at)
        )
        busy: dict[str, list[tuple[datetime, datetime]]] = {}
        for resource_id, busy_start, busy_end in rows:
            busy.setdefault(resource_id, []).append((busy_start, busy_end))
        return busy

    async def add_course(self, course: Course) -> None:
        await self._session.execute(
            _INSERT_COURSE,
            {
                "id": course.id,
                "patient_id": course.patient_id,
                "protocol": course.protocol,
                "family": course.family,
                "booked_at": course.booked_at,
                "booked_by": course.booked_by.value,
                "hold_id": course.hold_id,
                "offer_id": course.offer_id,
            },
        )

    async def get_course(self, course_id: UUID) -> Course | None:
        row = (
            (await self._session.execute(sa.select(COURSE).where(COURSE.c.id == course_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return Course(**dict(row) | {"booked_by": Actor(row["booked_by"])})

    async def course_for_offer(self, offer_id: UUID) -> Course | None:
        found = await self._session.execute(
            sa.select(COURSE.c.id).where(COURSE.c.offer_id == offer_id)
        )
        course_id = found.scalar()
        return None if course_id is None else await self.get_course(course_id)

    async def add_appointments(self, appointments: Sequence[Appointment]) -> None:
        """Insert occupancies; on PostgreSQL the exclusion constraint is the last word.

        No savepoint: after `SlotTaken` the transaction is spoilt and the caller rolls it back
        (a caller that must go on in the same transaction opens its own savepoint first).
        """
        if not appointments:
            return
        try:
            await self._session.execute(
                sa.insert(APPOINTMENT),
                [{"id": a.id} | _appointment_values(a) for a in appointments],
            )
        except DBAPIError as exc:
            if is_overlap_refusal(exc):
                raise SlotTaken() from exc
            raise

    async def save_appointments(self, appointments: Sequence[Appointment]) -> None:
        try:
            async with self._session.begin_nested():
                for appointment in appointments:
                    await self._session.execute(
                        sa.update(APPOINTMENT)
                        .where(APPOINTMENT.c.id == appointment.id)
                        .values(**_appointment_values(appointment))
                    )
        except DBAPIError as exc:
            if is_overlap_refusal(exc):
                raise SlotTaken() from exc
            raise

    async def get_appointment(
        self, appointment_id: UUID, *, for_update: bool = False
    ) -> Appointment | None:
        query = sa.select(APPOINTMENT).where(APPOINTMENT.c.id == appointment_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().first()
        return None if row is None else _appointment(row)

    async def appointments(
        self,
        *,
        course_id: UUID | None = None,
        hold_id: UUID | None = None,
        ids: Sequence[UUID] | None = None,
        patient_id: UUID | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        statuses: Sequence[AppointmentStatus] | None = None,
        limit: int | None = None,
        for_update: bool = False,
    ) -> list[Appointment]:
        query = sa.select(APPOINTMENT).order_by(APPOINTMENT.c.start_at, APPOINTMENT.c.id)
        if course_id is not None:
            query = query.where(APPOINTMENT.c.course_id == course_id)
        if hold_id is not None:
            query = query.where(APPOINTMENT.c.hold_id == hold_id)
        if ids is not None:
            query = query.where(APPOINTMENT.c.id.in_(list(ids)))
        if patient_id is not None:
            query = query.where(APPOINTMENT.c.patient_id == patient_id)
        if start_from is not None:
            query = query.where(APPOINTMENT.c.start_at >= start_from)
        if start_to is not None:
            query = query.where(APPOINTMENT.c.start_at < start_to)
        if statuses is not None:
            query = query.where(APPOINTMENT.c.status.in_([s.value for s in statuses]))
        if limit is not None:
            query = query.limit(limit)
        if for_update:
            query = query.with_for_update()
        rows = (await self._session.execute(query)).mappings().all()
        return [_appointment(row) for row in rows]

    async def completed_infusions(self, patient_id: UUID, family: str) -> int:
        found = await self._session.execute(
            sa.select(sa.func.count())
            .select_from(APPOINTMENT)
            .where(
                APPOINTMENT.c.patient_id == patient_id,
                APPOINTMENT.c.family == family,
                APPOINTMENT.c.status == AppointmentStatus.COMPLETED.value,
            )
        )
        return int(found.scalar_one())

    async def add_hold(self, hold: Hold) -> None:
        await self._session.execute(
            sa.insert(HOLD).values(
                id=hold.id,
                source_course_id=hold.source_course_id,
                protocol=hold.protocol,
                family=hold.family,
                kind=hold.kind.value,
                status=hold.status.value,
                placed_at=hold.placed_at,
                released_at=hold.released_at,
            )
        )

    async def get_hold(self, hold_id: UUID, *, for_update: bool = False) -> Hold | None:
        query = sa.select(HOLD).where(HOLD.c.id == hold_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().first()
        if row is None:
            return None
        return Hold(
            **dict(row) | {"kind": HoldKind(row["kind"]), "status": HoldStatus(row["status"])}
        )

    async def holds(self, status: HoldStatus | None = None, limit: int = 100) -> list[Hold]:
        query = sa.select(HOLD.c.id).order_by(HOLD.c.placed_at).limit(limit)
        if status is not None:
            query = query.where(HOLD.c.status == status.value)
        ids = list((await self._session.execute(query)).scalars())
        return [hold for hold_id in ids if (hold := await self.get_hold(hold_id)) is not None]

    async def save_hold(self, hold: Hold) -> None:
        await self._session.execute(
            sa.update(HOLD)
            .where(HOLD.c.id == hold.id)
            .values(status=hold.status.value, released_at=hold.released_at)
        )


class AuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(
        self,
        *,
        at: datetime,
        actor_role: str,
        actor_id: str,
        action: str,
        subject_id: UUID,
        reason: str,
    ) -> None:
        await self._session.execute(
            sa.insert(AUDIT).values(
                id=uuid.uuid4(),
                at=at,
                actor_role=actor_role,
                actor_id=actor_id,
                action=action,
                subject_id=subject_id,
                reason=reason,
            )
        )

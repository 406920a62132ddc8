"""Calendar handlers: availability, booking whole courses, and every change to an appointment.

Each handler runs in the caller's unit of work: state, audit rows and outbox rows commit together.
`restrict_to` is the patient a patient's token limits the request to: anything else is "not found".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from booking.adapters.repository import (
    AuditLog,
    CalendarRepository,
    PatientRepository,
    SlotTaken,
)
from booking.domain import scheduling
from booking.domain.model import (
    Actor,
    Appointment,
    AppointmentCancelled,
    AppointmentCheckedIn,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AppointmentStatus,
    BlockReleased,
    CancellationTerms,
    Condition,
    Course,
    CourseBooked,
    FeeWaived,
    Hold,
    HoldKind,
    HoldPlaced,
    HoldStatus,
    InvalidTransition,
    RideConfirmed,
    Timing,
    cancellation_terms,
)
from booking.service_layer.errors import Conflict, InvalidRequest, NotFound
from booking.service_layer.integration import publish_domain_events
from clinic_shared.policy import BookingPolicy, Family, Policy, ProtocolPolicy
from clinic_shared.uow import SqlUnitOfWork

# Queries


@dataclass(frozen=True)
class SearchAvailability:
    protocol: str
    patient_id: UUID | None
    window_from: datetime | None
    window_to: datetime | None
    limit: int | None


@dataclass(frozen=True)
class Availability:
    options: list[scheduling.CourseOption]
    first_visit: bool
    """Whether the first slot of each option is the patient's longer first visit."""


async def search_availability(query: SearchAvailability, uow: SqlUnitOfWork) -> Availability:
    policy = uow.policy.booking
    protocol = _protocol(policy, query.protocol)
    now = uow.clock.now()
    window_from = max(query.window_from or now, now)
    horizon = timedelta(days=policy.search_horizon_days)
    window_to = query.window_to or window_from + horizon
    if window_to <= window_from:
        raise InvalidRequest("invalid_window", "`to` must be after `from`.")
    if window_to - window_from > horizon:
        raise InvalidRequest(
            "window_too_long", f"Search at most {policy.search_horizon_days} days at a time."
        )
    limit = query.limit or policy.search_default_limit
    if not 1 <= limit <= policy.search_max_limit:
        raise InvalidRequest("invalid_limit", f"`limit` is 1 to {policy.search_max_limit}.")
    condition, first_visit = None, False
    if query.patient_id is not None:
        condition, first_visit = await patient_facts(uow, query.patient_id, protocol)
    family = family_for(policy, query.protocol, condition)
    calendar = calendar_of(uow)
    resources = policy.resource_ids(protocol.resource)
    busy = await calendar.busy(resources, window_from, window_to)
    # The same times on another chair is no real choice for a patient: ask for enough options
    # to keep `limit` distinct sets of times, each on its best-ranked chairs.
    options = scheduling.search_availability(
        policy,
        uow.policy.clinic.tz,
        query.protocol,
        family,
        busy,
        window_from,
        window_to,
        first_visit,
        now,
        limit * len(resources),
    )
    distinct: dict[tuple[datetime, ...], scheduling.CourseOption] = {}
    for option in options:
        distinct.setdefault(tuple(slot.start for slot in option.slots), option)
    return Availability(list(distinct.values())[:limit], first_visit)


async def get_course(
    course_id: UUID, restrict_to: UUID | None, uow: SqlUnitOfWork
) -> tuple[Course, list[Appointment]]:
    calendar = calendar_of(uow)
    course = await calendar.get_course(course_id)
    if course is None or (restrict_to is not None and course.patient_id != restrict_to):
        raise NotFound("course")
    return course, await calendar.appointments(course_id=course_id)


async def get_appointment(
    appointment_id: UUID, restrict_to: UUID | None, uow: SqlUnitOfWork
) -> Appointment:
    appointment = await calendar_of(uow).get_appointment(appointment_id)
    return _visible(appointment, restrict_to)


@dataclass(frozen=True)
class ListAppointments:
    patient_id: UUID | None
    start_from: datetime | None
    start_to: datetime | None
    status: AppointmentStatus | None
    limit: int = 200


async def list_appointments(query: ListAppointments, uow: SqlUnitOfWork) -> list[Appointment]:
    return await calendar_of(uow).appointments(
        patient_id=query.patient_id,
        start_from=query.start_from,
        start_to=query.start_to,
        statuses=None if query.status is None else [query.status],
        limit=query.limit,
    )


# Booking


@dataclass(frozen=True)
class BookCourse:
    patient_id: UUID
    protocol: str
    slots: Sequence[tuple[datetime, str]]
    """(start, chair or consult resource) as asked; naive starts are clinic-local."""
    booked_by: Actor


@dataclass(frozen=True)
class BookedCourse:
    course: Course
    appointments: list[Appointment]


async def book_course(cmd: BookCourse, uow: SqlUnitOfWork) -> BookedCourse:
    """All of the course's appointments are booked, or none is."""
    policy = uow.policy.booking
    protocol = _protocol(policy, cmd.protocol)
    condition, first_visit = await patient_facts(uow, cmd.patient_id, protocol, booking=True)
    family = family_for(policy, cmd.protocol, condition)
    now = uow.clock.now()
    zone = uow.policy.clinic.tz
    starts = [(parse_local_start(start, zone), resource) for start, resource in cmd.slots]
    slots = _validated(policy, zone, cmd.protocol, family, starts, first_visit, now)
    course = Course(
        id=uuid.uuid4(),
        patient_id=cmd.patient_id,
        protocol=cmd.protocol,
        family=family.value,
        booked_at=now,
        booked_by=cmd.booked_by,
    )
    appointments = [
        Appointment(
            id=uuid.uuid4(),
            course_id=course.id,
            patient_id=cmd.patient_id,
            hold_id=None,
            protocol=cmd.protocol,
            family=family.value,
            sequence=index,
            resource_id=slot.resource_id,
            start=slot.start,
            end=slot.end,
            first_visit=first_visit and index == 1,
            status=AppointmentStatus.BOOKED,
            created_at=now,
        )
        for index, slot in enumerate(slots, start=1)
    ]
    calendar = calendar_of(uow)
    await calendar.lock_resources(slot.resource_id for slot in slots)
    await _ensure_free(calendar, cmd.patient_id, appointments)
    await calendar.add_course(course)
    try:
        await calendar.add_appointments(appointments)
    except SlotTaken as exc:
        raise _slot_taken() from exc
    await publish_domain_events(uow, [CourseBooked(course, appointments)])
    return BookedCourse(course, appointments)


# Cancellation and rescheduling


@dataclass(frozen=True)
class FeeDecision:
    acknowledge_late_fee: bool = False
    waive_reason: str | None = None
    """Staff only: waive the fee this change incurs, with the reason (audited)."""


@dataclass(frozen=True)
class Requester:
    actor: Actor
    role: str
    subject: str
    restrict_to: UUID | None


@dataclass(frozen=True)
class CancelAppointment:
    appointment_id: UUID
    reason: str | None
    fees: FeeDecision
    requester: Requester


@dataclass
class Cancellation:
    appointment: Appointment
    terms: CancellationTerms
    released: list[Appointment] = field(default_factory=list)
    hold: Hold | None = None
    held: list[Appointment] = field(default_factory=list)


async def cancel_appointment(cmd: CancelAppointment, uow: SqlUnitOfWork) -> Cancellation:
    """Cancel under the 48-hour rule; cancelling a course's initial induction appointment
    releases the rest of the series, held for the waitlist in this same transaction."""
    calendar = calendar_of(uow)
    appointment = _visible(
        await calendar.get_appointment(cmd.appointment_id, for_update=uow.is_postgres),
        cmd.requester.restrict_to,
    )
    now = uow.clock.now()
    terms = _terms(uow.policy, appointment.start, now)
    waive = _fee_decision(terms, cmd.fees, uow.policy)
    with _transition():
        appointment.cancel(
            terms=terms, by=cmd.requester.actor, reason=cmd.reason, waive_fee=waive, now=now
        )
    events: list[object] = [AppointmentCancelled(appointment, terms.seconds_before)]
    if appointment.fee_waived and cmd.fees.waive_reason:
        await _audit_waiver(uow, cmd.requester, appointment.id, cmd.fees.waive_reason, now)
    result = Cancellation(appointment, terms)
    protocol = uow.policy.booking.protocols.get(appointment.protocol)
    course_id = appointment.course_id
    if protocol is not None and protocol.is_infusion and course_id is not None:
        if protocol.induction and appointment.sequence == 1:
            later = await calendar.appointments(
                course_id=course_id,
                statuses=[AppointmentStatus.BOOKED],
                for_update=uow.is_postgres,
            )
            result.released = [a for a in later if a.id != appointment.id and a.start > now]
            for released in result.released:
                released.release_with_series(now)
                events.append(
                    AppointmentCancelled(
                        released,
                        int((released.start - now).total_seconds()),
                        series_released=True,
                    )
                )
            to_hold, kind = result.released, HoldKind.SERIES
        else:
            to_hold, kind = [appointment], HoldKind.SINGLE
        await calendar.save_appointments([appointment, *result.released])
        if to_hold:
            result.hold, result.held = await _place_hold(
                uow, calendar, course_id, appointment, to_hold, kind, now, events
            )
    else:
        await calendar.save_appointments([appointment])
    await publish_domain_events(uow, events)
    return result


async def _place_hold(
    uow: SqlUnitOfWork,
    calendar: CalendarRepository,
    course_id: UUID,
    source: Appointment,
    slots: Sequence[Appointment],
    kind: HoldKind,
    now: datetime,
    events: list[object],
) -> tuple[Hold, list[Appointment]]:
    review = uow.policy.booking.cancellation.series_release == "scheduler_review"
    review = review and kind is HoldKind.SERIES
    hold = Hold(
        id=uuid.uuid4(),
        source_course_id=course_id,
        protocol=source.protocol,
        family=source.family,
        kind=kind,
        status=HoldStatus.AWAITING_REVIEW if review else HoldStatus.RELEASED,
        placed_at=now,
        released_at=None if review else now,
    )
    held = [
        Appointment(
            id=uuid.uuid4(),
            course_id=None,
            patient_id=None,
            hold_id=hold.id,
            protocol=slot.protocol,
            family=slot.family,
            sequence=index,
            resource_id=slot.resource_id,
            start=slot.start,
            end=slot.end,
            first_visit=False,
            status=AppointmentStatus.HELD,
            created_at=now,
        )
        for index, slot in enumerate(slots, start=1)
    ]
    await calendar.add_hold(hold)
    try:
        await calendar.add_appointments(held)
    except SlotTaken as exc:  # impossible while the freed rows were ours; never half-hold
        raise _slot_taken() from exc
    events.append(HoldPlaced(hold, held))
    if not review:
        events.append(BlockReleased(hold, held))
    return hold, held


@dataclass(frozen=True)
class RescheduleAppointment:
    appointment_id: UUID
    start: datetime
    resource_id: str
    fees: FeeDecision
    requester: Requester


@dataclass(frozen=True)
class Rescheduled:
    appointment: Appointment
    terms: CancellationTerms
    fee_cents: int


async def reschedule_appointment(cmd: RescheduleAppointment, uow: SqlUnitOfWork) -> Rescheduled:
    """Move an appointment; moving one that starts within the window counts as a late
    cancellation of the old slot. The course must still satisfy its rule afterwards."""
    policy = uow.policy.booking
    calendar = calendar_of(uow)
    appointment = _visible(
        await calendar.get_appointment(cmd.appointment_id, for_update=uow.is_postgres),
        cmd.requester.restrict_to,
    )
    if appointment.status is not AppointmentStatus.BOOKED or appointment.course_id is None:
        raise Conflict(
            "invalid_state", f"Cannot move an appointment that is {appointment.status.value}."
        )
    now = uow.clock.now()
    if appointment.start <= now:
        raise Conflict("appointment_started", "The appointment has started; it cannot move.")
    terms = _terms(uow.policy, appointment.start, now)
    waive = _fee_decision(terms, cmd.fees, uow.policy)
    zone = uow.policy.clinic.tz
    new_start = parse_local_start(cmd.start, zone)
    if new_start <= now:
        raise Conflict("slot_in_past", "The new start is in the past.")
    others = [
        a
        for a in await calendar.appointments(course_id=appointment.course_id)
        if a.id != appointment.id
        and a.status
        in (AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED)
    ]
    starts = [(a.start, a.resource_id) for a in others] + [(new_start, cmd.resource_id)]
    earliest = min(start for start, _ in starts)
    partial = _with_count(policy, appointment.protocol, len(starts))
    # Appointments already given stay where they are; only the rule among them is checked.
    slots = _validated(
        partial,
        zone,
        appointment.protocol,
        Family(appointment.family),
        starts,
        appointment.first_visit and new_start == earliest,
        earliest - timedelta(seconds=1),
    )
    moved = next(s for s in slots if s.start == new_start and s.resource_id == cmd.resource_id)
    if appointment.first_visit and moved.start != earliest:
        raise Conflict("first_visit_must_come_first", "The first visit cannot move after others.")
    previous_start = appointment.start
    await calendar.lock_resources({appointment.resource_id, moved.resource_id})
    appointment.start, appointment.end, appointment.resource_id = (
        moved.start,
        moved.end,
        moved.resource_id,
    )
    await _ensure_free(calendar, appointment.patient_id, [appointment], ignore={appointment.id})
    try:
        await calendar.save_appointments([appointment])
    except SlotTaken as exc:
        raise _slot_taken() from exc
    fee = 0 if waive else terms.fee_cents
    if waive and cmd.fees.waive_reason:
        await _audit_waiver(uow, cmd.requester, appointment.id, cmd.fees.waive_reason, now)
    await publish_domain_events(
        uow,
        [
            AppointmentRescheduled(
                appointment, previous_start, terms, fee, waive, cmd.requester.actor, now
            )
        ],
    )
    return Rescheduled(appointment, terms, fee)


# Day-of-treatment changes


@dataclass(frozen=True)
class ChangeAppointment:
    appointment_id: UUID
    requester: Requester


async def check_in(cmd: ChangeAppointment, uow: SqlUnitOfWork) -> Appointment:
    appointment = await _for_change(cmd, uow)
    now = uow.clock.now()
    zone = uow.policy.clinic.tz
    if now.astimezone(zone).date() < appointment.start.astimezone(zone).date():
        raise Conflict("too_early_for_check_in", "Check-in opens on the appointment's day.")
    with _transition():
        appointment.check_in(now)
    await calendar_of(uow).save_appointments([appointment])
    await publish_domain_events(uow, [AppointmentCheckedIn(appointment)])
    return appointment


@dataclass(frozen=True)
class CompleteAppointment(ChangeAppointment):
    infusion_minutes: int | None = None


async def complete(cmd: CompleteAppointment, uow: SqlUnitOfWork) -> tuple[Appointment, int | None]:
    """Complete a visit; an infusion gets the patient's lifetime ordinal in its family."""
    appointment = await _for_change(cmd, uow)
    protocol = _protocol(uow.policy.booking, appointment.protocol)
    calendar = calendar_of(uow)
    ordinal: int | None = None
    minutes: int | None = None
    if protocol.is_infusion and appointment.patient_id is not None:
        # One completion at a time per patient, so that two never get the same ordinal.
        await PatientRepository(uow.session).lock(appointment.patient_id)
        ordinal = await calendar.completed_infusions(appointment.patient_id, appointment.family)
        ordinal += 1
        minutes = cmd.infusion_minutes or _infusion_minutes(
            uow.policy.booking, protocol, appointment.family
        )
    with _transition():
        appointment.complete(uow.clock.now(), minutes)
    await calendar.save_appointments([appointment])
    await publish_domain_events(uow, [AppointmentCompleted(appointment, ordinal)])
    return appointment, ordinal


@dataclass(frozen=True)
class MarkNoShow(ChangeAppointment):
    waive_reason: str | None = None


async def mark_no_show(cmd: MarkNoShow, uow: SqlUnitOfWork) -> Appointment:
    appointment = await _for_change(cmd, uow)
    now = uow.clock.now()
    policy = uow.policy
    grace = timedelta(minutes=policy.booking.cancellation.no_show_grace_minutes)
    with _transition():
        appointment.mark_no_show(
            now=now, grace=grace, fee_cents=policy.fees.no_show_cents, waive=bool(cmd.waive_reason)
        )
    await calendar_of(uow).save_appointments([appointment])
    if appointment.fee_waived and cmd.waive_reason:
        await _audit_waiver(uow, cmd.requester, appointment.id, cmd.waive_reason, now)
    await publish_domain_events(uow, [AppointmentNoShow(appointment, now)])
    return appointment


@dataclass(frozen=True)
class WaiveFee(ChangeAppointment):
    reason: str = ""


async def waive_fee(cmd: WaiveFee, uow: SqlUnitOfWork) -> Appointment:
    """Staff waive a late-cancellation or no-show fee after the fact, with a reason."""
    appointment = await _for_change(cmd, uow)
    now = uow.clock.now()
    with _transition():
        kind = appointment.waive_fee()
    await calendar_of(uow).save_appointments([appointment])
    await _audit_waiver(uow, cmd.requester, appointment.id, cmd.reason, now)
    await publish_domain_events(uow, [FeeWaived(appointment, kind, now)])
    return appointment


@dataclass(frozen=True)
class ConfirmRide(ChangeAppointment):
    confirmed: bool = True
    driver_name: str | None = None
    driver_phone: str | None = None


async def confirm_ride(cmd: ConfirmRide, uow: SqlUnitOfWork) -> Appointment:
    appointment = await _for_change(cmd, uow)
    with _transition():
        appointment.confirm_ride(
            confirmed=cmd.confirmed,
            driver_name=cmd.driver_name,
            driver_phone=cmd.driver_phone,
            now=uow.clock.now(),
        )
    await calendar_of(uow).save_appointments([appointment])
    await publish_domain_events(uow, [RideConfirmed(appointment)])
    return appointment


# Helpers shared by the handlers above and the hold handlers


def calendar_of(uow: SqlUnitOfWork) -> CalendarRepository:
    return CalendarRepository(uow.session, postgres=uow.is_postgres)


def _visible(appointment: Appointment | None, restrict_to: UUID | None) -> Appointment:
    if appointment is None:
        raise NotFound("appointment")
    if restrict_to is not None and appointment.patient_id != restrict_to:
        raise NotFound("appointment")
    return appointment


async def _for_change(cmd: ChangeAppointment, uow: SqlUnitOfWork) -> Appointment:
    appointment = await calendar_of(uow).get_appointment(
        cmd.appointment_id, for_update=uow.is_postgres
    )
    return _visible(appointment, cmd.requester.restrict_to)


class _transition:
    """Turns the domain's refusal of a state change into a 409 for the caller."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, InvalidTransition):
            raise Conflict(exc.code, exc.detail) from exc


def _protocol(policy: BookingPolicy, name: str) -> ProtocolPolicy:
    protocol = policy.protocols.get(name)
    if protocol is None:
        raise InvalidRequest(
            "unknown_protocol", f"Unknown protocol {name!r}; see GET /v1/protocols."
        )
    return protocol


def family_for(policy: BookingPolicy, protocol: str, condition: Condition | None) -> Family:
    try:
        return scheduling.protocol_family(
            policy, protocol, Family(condition.value) if condition else None
        )
    except scheduling.SchedulingError as exc:
        raise Conflict(exc.code, exc.detail) from exc


def parse_local_start(value: datetime, zone: scheduling.ZoneInfo) -> datetime:
    try:
        return scheduling.parse_start(value, zone)
    except scheduling.InvalidLocalTime as exc:
        raise InvalidRequest(exc.code, exc.detail) from exc


def _validated(
    policy: BookingPolicy,
    zone: scheduling.ZoneInfo,
    protocol: str,
    family: Family,
    starts: Sequence[tuple[datetime, str]],
    first_visit: bool,
    now: datetime,
) -> list[scheduling.Slot]:
    try:
        return scheduling.validate_course(policy, zone, protocol, family, starts, first_visit, now)
    except scheduling.SchedulingError as exc:
        raise Conflict(exc.code, exc.detail) from exc


def _with_count(policy: BookingPolicy, protocol: str, count: int) -> BookingPolicy:
    """The policy with one protocol's course count changed: a course some of whose
    appointments were cancelled still keeps the spacing rules among the rest."""
    rule = policy.protocols[protocol].course
    if rule.count == count:
        return policy
    changed = policy.protocols[protocol].model_copy(
        update={"course": rule.model_copy(update={"count": count})}
    )
    return policy.model_copy(update={"protocols": policy.protocols | {protocol: changed}})


def _infusion_minutes(policy: BookingPolicy, protocol: ProtocolPolicy, family: str) -> int:
    if protocol.infusion_minutes is not None:
        return protocol.infusion_minutes
    source = policy.family_protocol(Family(family))
    if source is None or source.infusion_minutes is None:
        return 0
    return source.infusion_minutes


async def patient_facts(
    uow: SqlUnitOfWork,
    patient_id: UUID,
    protocol: ProtocolPolicy,
    *,
    booking: bool = False,
) -> tuple[Condition | None, bool]:
    """The patient's condition (from the intake) and whether this would be their first visit,
    read in one query. When `booking`, an induction also needs a cleared intake."""
    facts = await PatientRepository(uow.session).booking_facts(patient_id)
    if facts is None:
        raise NotFound("patient")
    if booking and protocol.induction and not facts.intake_cleared:
        raise Conflict(
            "intake_not_cleared",
            "An induction course can be booked only after a clinician clears the intake.",
        )
    return facts.condition, protocol.is_infusion and not facts.has_infusion


async def _ensure_free(
    calendar: CalendarRepository,
    patient_id: UUID | None,
    appointments: Sequence[Appointment],
    ignore: set[UUID] | None = None,
) -> None:
    clashes = [
        clash
        for clash in await calendar.clashes(
            patient_id, [(a.resource_id, a.start, a.end) for a in appointments]
        )
        if clash.id not in (ignore or set())
    ]
    if any(clash.taken for clash in clashes):
        raise _slot_taken()
    if any(clash.own for clash in clashes):
        raise Conflict(
            "patient_double_booked", "The patient already has an appointment at that time."
        )


def _slot_taken() -> Conflict:
    return Conflict("slot_taken", "A requested slot was just taken; search availability again.")


def _terms(policy: Policy, start: datetime, now: datetime) -> CancellationTerms:
    return cancellation_terms(
        start, now, policy.booking.cancellation.window, policy.fees.late_cancellation_cents
    )


def _fee_decision(terms: CancellationTerms, fees: FeeDecision, policy: Policy) -> bool:
    """Whether the fee is waived; a late change needs the fee acknowledged or waived."""
    waive = bool(fees.waive_reason and fees.waive_reason.strip())
    if terms.timing is Timing.LATE and not (fees.acknowledge_late_fee or waive):
        raise Conflict(
            "late_cancellation_unacknowledged",
            f"Changes less than {policy.booking.cancellation.window_hours} hours before the "
            f"start carry a fee of {terms.fee_cents} cents; acknowledge it to go ahead.",
            fee_cents=terms.fee_cents,
            hours_before=terms.hours_before,
            window_hours=policy.booking.cancellation.window_hours,
        )
    return waive and terms.timing is Timing.LATE


async def _audit_waiver(
    uow: SqlUnitOfWork, requester: Requester, appointment_id: UUID, reason: str, now: datetime
) -> None:
    await AuditLog(uow.session).record(
        at=now,
        actor_role=requester.role,
        actor_id=requester.subject,
        action="fee_waived",
        subject_id=appointment_id,
        reason=reason.strip(),
    )

"""Slots held for the waitlist: a scheduler's reviewed release, and the waitlist's answers.

The waitlist's events arrive through the inbox (each applied once); every handler here also
checks the state it finds, so a replayed or late answer changes nothing and books nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from booking.adapters.repository import CalendarRepository, SlotTaken
from booking.domain import scheduling
from booking.domain.model import (
    Actor,
    Appointment,
    AppointmentStatus,
    BlockReleased,
    Course,
    CourseBooked,
    Hold,
    HoldBooked,
    HoldBookingRejected,
    HoldReleased,
    HoldStatus,
)
from booking.service_layer.calendar import calendar_of, family_for, patient_facts
from booking.service_layer.errors import Conflict, NotFound
from booking.service_layer.integration import publish_domain_events
from clinic_shared.consumer import EventContext
from clinic_shared.contracts import waitlist
from clinic_shared.policy import Family
from clinic_shared.uow import SqlUnitOfWork


async def list_holds(
    status: HoldStatus | None, uow: SqlUnitOfWork
) -> list[tuple[Hold, list[Appointment]]]:
    calendar = calendar_of(uow)
    return [
        (hold, await calendar.appointments(hold_id=hold.id))
        for hold in await calendar.holds(status)
    ]


async def confirm_release(hold_id: UUID, uow: SqlUnitOfWork) -> tuple[Hold, list[Appointment]]:
    """A scheduler confirms a series release held for review: the waitlist gets the block."""
    calendar = calendar_of(uow)
    hold = await calendar.get_hold(hold_id, for_update=uow.is_postgres)
    if hold is None:
        raise NotFound("hold")
    held = await calendar.appointments(hold_id=hold.id, statuses=[AppointmentStatus.HELD])
    if hold.status is HoldStatus.RELEASED:
        return hold, held
    if hold.status is not HoldStatus.AWAITING_REVIEW:
        raise Conflict("invalid_state", f"The hold is {hold.status.value}.")
    now = uow.clock.now()
    hold.status, hold.released_at = HoldStatus.RELEASED, now
    await calendar.save_hold(hold)
    await publish_domain_events(uow, [BlockReleased(hold, held)])
    return hold, held


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def on_offer_accepted(
    event: waitlist.OfferAccepted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """Book the held slots for the patient who accepted, or say clearly why not."""
    calendar = calendar_of(uow)
    if await calendar.course_for_offer(event.offer_id) is not None:
        return  # already booked for this offer
    now = uow.clock.now()
    try:
        async with uow.session.begin_nested():  # a refusal leaves no partial booking behind
            course, slots = await _book_held(event, calendar, uow, now)
    except _Rejected as exc:
        await publish_domain_events(
            uow,
            [HoldBookingRejected(event.hold_id, event.offer_id, event.patient_id, exc.reason, now)],
        )
        return
    await publish_domain_events(
        uow,
        [
            CourseBooked(course, slots),
            HoldBooked(event.hold_id, event.offer_id, course, [a.id for a in slots]),
        ],
    )


async def _book_held(
    event: waitlist.OfferAccepted, calendar: CalendarRepository, uow: SqlUnitOfWork, now: datetime
) -> tuple[Course, list[Appointment]]:
    policy = uow.policy.booking
    hold = await calendar.get_hold(event.hold_id, for_update=uow.is_postgres)
    if hold is None:
        raise _Rejected("hold_not_found")
    slots = await calendar.appointments(
        hold_id=hold.id,
        ids=event.appointment_ids,
        statuses=[AppointmentStatus.HELD],
        for_update=uow.is_postgres,
    )
    if hold.status is not HoldStatus.RELEASED or len(slots) != len(set(event.appointment_ids)):
        raise _Rejected("slots_not_held")
    if any(slot.start <= now for slot in slots):
        raise _Rejected("slot_in_past")
    protocol = policy.protocols.get(event.protocol)
    if protocol is None:
        raise _Rejected("protocol_mismatch")
    try:
        condition, first_visit = await patient_facts(uow, event.patient_id, protocol, booking=True)
        family = family_for(policy, event.protocol, condition)
    except NotFound as exc:
        raise _Rejected("patient_not_found") from exc
    except Conflict as exc:
        reason = "intake_not_cleared" if exc.code == "intake_not_cleared" else "protocol_mismatch"
        raise _Rejected(reason) from exc
    if family is Family.CONSULT or family.value != hold.family:
        raise _Rejected("protocol_mismatch")
    course = Course(
        id=uuid.uuid4(),
        patient_id=event.patient_id,
        protocol=event.protocol,
        family=family.value,
        booked_at=now,
        booked_by=Actor.PATIENT,
        hold_id=hold.id,
        offer_id=event.offer_id,
    )
    await calendar.lock_resources(slot.resource_id for slot in slots)
    if first_visit:
        await _lengthen_first_visit(slots[0], calendar, uow, family)
    for sequence, slot in enumerate(slots, start=1):
        slot.status = AppointmentStatus.BOOKED
        slot.patient_id, slot.course_id = event.patient_id, course.id
        slot.protocol, slot.sequence = event.protocol, sequence
    clashes = await calendar.clashes(
        event.patient_id, [(s.resource_id, s.start, s.end) for s in slots]
    )
    if any(clash.own for clash in clashes):  # the patient is elsewhere at one of these times
        raise _Rejected("slots_not_held")
    await calendar.add_course(course)
    try:
        await calendar.save_appointments(slots)
    except SlotTaken as exc:
        raise _Rejected("first_visit_does_not_fit") from exc
    if not await calendar.appointments(hold_id=hold.id, statuses=[AppointmentStatus.HELD]):
        hold.status = HoldStatus.CLOSED
        await calendar.save_hold(hold)
    return course, slots


async def _lengthen_first_visit(
    slot: Appointment,
    calendar: CalendarRepository,
    uow: SqlUnitOfWork,
    family: Family,
) -> None:
    """A patient's first infusion visit needs the longer first-visit chair time."""
    policy = uow.policy.booking
    length = scheduling.chair_time(policy, slot.protocol, family, first_visit=True)
    if slot.start + length <= slot.end:
        slot.first_visit = True
        return
    end = slot.start + length
    if not scheduling.within_opening_hours(policy, uow.policy.clinic.tz, slot.start, end):
        raise _Rejected("first_visit_does_not_fit")
    if any(
        clash.taken for clash in await calendar.clashes(None, [(slot.resource_id, slot.end, end)])
    ):
        raise _Rejected("first_visit_does_not_fit")
    slot.end = slot.start + length
    slot.first_visit = True


async def on_slots_unclaimed(
    event: waitlist.SlotsUnclaimed, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """Nobody took these held slots: they are open to everybody again."""
    calendar = calendar_of(uow)
    hold = await calendar.get_hold(event.hold_id, for_update=uow.is_postgres)
    if hold is None:
        return
    slots = await calendar.appointments(
        hold_id=hold.id,
        ids=event.appointment_ids,
        statuses=[AppointmentStatus.HELD],
        for_update=uow.is_postgres,
    )
    if not slots:
        return
    now = uow.clock.now()
    for slot in slots:
        slot.status = AppointmentStatus.RELEASED
    await calendar.save_appointments(slots)
    if not await calendar.appointments(hold_id=hold.id, statuses=[AppointmentStatus.HELD]):
        hold.status = HoldStatus.CLOSED
        await calendar.save_hold(hold)
    await publish_domain_events(
        uow, [HoldReleased(hold.id, [s.id for s in slots], "unclaimed", now)]
    )

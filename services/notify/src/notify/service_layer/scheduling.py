"""Turning other services' events into scheduled messages, and keeping them true.

Each handler runs in the consumer's unit of work (inbox row, changes, commit together), so an
event redelivered by Kafka schedules nothing twice; the messages' dedupe keys say the same a
second time. Due times come from `notify.domain.schedule`, on the clinic's clock, with the
clinic's and the patient's quiet hours applied. Events carry ids and instants only: the
medication classes that decide hold reminders are asked of booking's internal API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from clinic_shared.consumer import Batchable, EventContext, Handler
from clinic_shared.contracts import billing, booking, waitlist
from clinic_shared.policy import QuietHours
from clinic_shared.problems import ProblemError
from clinic_shared.uow import SqlUnitOfWork
from notify.adapters.repository import NotifyRepository
from notify.domain import schedule
from notify.domain.model import (
    AppointmentStatus,
    Channel,
    Kind,
    KnownAppointment,
    Message,
    Preferences,
    Status,
    channels_for,
    default_preferences,
)
from notify.domain.ports import PatientDirectory

REMINDER_KINDS = (Kind.FASTING, Kind.RIDE_HOME, Kind.MEDICATION_HOLD)


def repository(uow: SqlUnitOfWork) -> NotifyRepository:
    return NotifyRepository(uow.session, postgres=uow.is_postgres)


def clinic_zone(uow: SqlUnitOfWork) -> ZoneInfo:
    return uow.policy.clinic.tz


async def preferences_of(uow: SqlUnitOfWork, patient_id: UUID) -> Preferences:
    return await repository(uow).preferences(patient_id) or default_preferences(patient_id)


def own_quiet_hours(preferences: Preferences) -> QuietHours | None:
    if preferences.quiet_start is None or preferences.quiet_end is None:
        return None
    return QuietHours(
        start=time.fromisoformat(preferences.quiet_start),
        end=time.fromisoformat(preferences.quiet_end),
    )


def quiet_windows(uow: SqlUnitOfWork, preferences: Preferences) -> list[QuietHours]:
    return schedule.quiet_windows(uow.policy.notify, own_quiet_hours(preferences))


@dataclass(frozen=True)
class Planned:
    """One message to schedule, before channels are chosen."""

    kind: Kind
    step: str
    planned_at: datetime
    key: str
    """The dedupe key without the channel."""
    send_by: datetime | None = None
    subject_id: UUID | None = None
    facts: dict[str, Any] | None = None
    due_at: datetime | None = None
    """Already placed out of quiet hours; placed from `planned_at` when None."""


async def schedule_messages(
    uow: SqlUnitOfWork,
    patient_id: UUID,
    *planned: Planned,
    preferences: Preferences | None = None,
) -> list[Message]:
    """One message per planned item and channel the patient allows, placed out of quiet hours
    (`preferences`: the patient's, when the caller has read them already)."""
    if not planned:
        return []
    preferences = preferences or await preferences_of(uow, patient_id)
    messages = plan_messages(uow, preferences, *planned)
    await repository(uow).add_messages(messages)
    return messages


def plan_messages(uow: SqlUnitOfWork, preferences: Preferences, *planned: Planned) -> list[Message]:
    """The messages `schedule_messages` writes for one patient, not yet written."""
    patient_id = preferences.patient_id
    windows = quiet_windows(uow, preferences)
    zone = clinic_zone(uow)
    now = uow.clock.now()
    return [
        Message.new(
            patient_id=patient_id,
            kind=item.kind,
            step=item.step,
            channel=channel,
            dedupe_key=f"{item.key}:{channel.value}",
            planned_at=item.planned_at,
            due_at=item.due_at or schedule.place(item.planned_at, now, windows, zone),
            send_by=item.send_by,
            now=now,
            subject_id=item.subject_id,
            facts=item.facts,
        )
        for item in planned
        for channel in channels_for(item.kind, preferences.allowed())
    ]


async def cancel_pending(
    uow: SqlUnitOfWork, subject_ids: Sequence[UUID], reason: str, kinds: Sequence[Kind] = ()
) -> int:
    repo = repository(uow)
    now = uow.clock.now()
    found = await repo.pending(subject_ids=subject_ids, kinds=kinds)
    for message in found:
        message.status = Status.CANCELLED
        message.last_error = reason
        message.updated_at = now
        await repo.save(message)
    return len(found)


# booking ---------------------------------------------------------------------------------------


def _welcome(event: booking.PatientRegistered) -> Planned:
    return Planned(Kind.WELCOME, "welcome", event.registered_at, key=f"welcome:{event.patient_id}")


async def _on_patient_registered(
    event: booking.PatientRegistered, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await schedule_messages(uow, event.patient_id, _welcome(event))


async def _on_patients_registered(
    items: list[tuple[booking.PatientRegistered, EventContext]], uow: SqlUnitOfWork
) -> None:
    """A backlog's registrations: one preferences query and one insert for the lot."""
    events = [event for event, _context in items]
    known = await repository(uow).preferences_of_many([event.patient_id for event in events])
    messages = [
        message
        for event in events
        for message in plan_messages(
            uow,
            known.get(event.patient_id) or default_preferences(event.patient_id),
            _welcome(event),
        )
    ]
    await repository(uow).add_messages(messages)


on_patient_registered = Batchable(_on_patient_registered, _on_patients_registered)


def _slot(appointment_id: UUID, start: datetime, end: datetime, sequence: int) -> dict[str, Any]:
    """One appointment as a notice's calendar shows it (SEQUENCE grows with each change)."""
    return {
        "appointment_id": str(appointment_id),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "sequence": sequence,
    }


async def on_course_booked(
    event: booking.CourseBooked, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """One confirmation for the whole course, its calendar holding every appointment."""
    slots = sorted(event.slots, key=lambda s: s.start)
    facts = {
        "course_id": str(event.course_id),
        "appointments": [_slot(s.appointment_id, s.start, s.end, 0) for s in slots],
    }
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.CONFIRMATION,
            "course",
            event.booked_at,
            key=f"confirmation:{event.course_id}",
            send_by=slots[-1].start if slots else None,
            subject_id=event.course_id,
            facts=facts,
        ),
    )


def _reminder_facts(appointment: KnownAppointment) -> dict[str, Any]:
    return {
        "appointment_id": str(appointment.id),
        "course_id": str(appointment.course_id),
        "start": appointment.start.isoformat(),
        "end": appointment.end.isoformat(),
        "pickup_inside": appointment.family == "pain",
    }


async def _medication_classes(directory: PatientDirectory, patient_id: UUID) -> frozenset[str]:
    """The intake's medication classes. Booking out of reach is a transient failure: the
    consumer tries the event again later rather than plan reminders without them."""
    try:
        contact = await directory.contact(patient_id)
    except ProblemError as exc:
        raise ConnectionError("booking's internal API is unavailable") from exc
    return frozenset() if contact is None else contact.medication_classes


def _reminder_plan(
    uow: SqlUnitOfWork,
    appointment: KnownAppointment,
    classes: frozenset[str],
    windows: Sequence[QuietHours],
) -> list[Planned]:
    found = schedule.reminders(
        schedule.Appointment(appointment.start, appointment.infusion, classes),
        uow.policy.notify,
        clinic_zone(uow),
        now=uow.clock.now(),
        windows=windows,
    )
    return [
        Planned(
            Kind(r.kind),
            r.step,
            r.planned_at,
            key=f"{r.kind}:{appointment.id}:r{appointment.revision}:{r.step}",
            send_by=appointment.start,
            subject_id=appointment.id,
            facts=_reminder_facts(appointment),
            due_at=r.due_at,
        )
        for r in found
    ]


async def on_appointment_booked(
    event: booking.AppointmentBooked,
    context: EventContext,
    uow: SqlUnitOfWork,
    directory: PatientDirectory,
) -> None:
    repo = repository(uow)
    if await repo.appointment(event.appointment_id) is not None:
        return  # known already: booking said this before
    appointment = KnownAppointment(
        id=event.appointment_id,
        patient_id=event.patient_id,
        course_id=event.course_id,
        family=event.family,
        protocol=event.protocol,
        start=event.start,
        end=event.end,
        status=AppointmentStatus.BOOKED,
    )
    await repo.put_appointment(appointment)
    if not appointment.infusion:
        return
    classes = await _medication_classes(directory, event.patient_id)
    preferences = await preferences_of(uow, event.patient_id)
    plan = _reminder_plan(uow, appointment, classes, quiet_windows(uow, preferences))
    await schedule_messages(uow, event.patient_id, *plan, preferences=preferences)


async def on_appointment_rescheduled(
    event: booking.AppointmentRescheduled,
    context: EventContext,
    uow: SqlUnitOfWork,
    directory: PatientDirectory,
) -> None:
    """A change notice at once, and the pending reminders moved to the new time."""
    repo = repository(uow)
    appointment = await repo.appointment(event.appointment_id)
    if appointment is None:
        return  # booked before notify knew of it: nothing of ours to move
    appointment.start, appointment.end = event.start, event.end
    appointment.revision += 1
    await repo.put_appointment(appointment)
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.CHANGE,
            "rescheduled",
            event.rescheduled_at,
            key=f"change:{appointment.id}:r{appointment.revision}",
            send_by=event.start,
            subject_id=appointment.id,
            facts={
                **_reminder_facts(appointment),
                "previous_start": event.previous_start.isoformat(),
                "appointments": [
                    _slot(appointment.id, appointment.start, appointment.end, appointment.revision)
                ],
            },
        ),
    )
    if appointment.infusion:
        await _move_reminders(uow, appointment, directory)


async def _move_reminders(
    uow: SqlUnitOfWork, appointment: KnownAppointment, directory: PatientDirectory
) -> None:
    repo = repository(uow)
    now = uow.clock.now()
    preferences = await preferences_of(uow, appointment.patient_id)
    classes = await _medication_classes(directory, appointment.patient_id)
    plan = {
        (p.kind, p.step): p
        for p in _reminder_plan(uow, appointment, classes, quiet_windows(uow, preferences))
    }
    moved: set[tuple[Kind, str]] = set()
    for message in await repo.pending(subject_ids=[appointment.id], kinds=REMINDER_KINDS):
        item = plan.get((message.kind, message.step))
        if item is None:
            message.status = Status.CANCELLED
            message.last_error = "no_longer_planned"
        else:
            assert item.due_at is not None
            message.planned_at, message.due_at = item.planned_at, item.due_at
            message.send_by = item.send_by
            message.facts = dict(item.facts or {})
            message.dedupe_key = f"{item.key}:{message.channel.value}"
            message.status = Status.SCHEDULED
            message.claim_token = None
            moved.add((message.kind, message.step))
        message.updated_at = now
        await repo.save(message)
    missing = [p for key, p in plan.items() if key not in moved]
    await schedule_messages(uow, appointment.patient_id, *missing, preferences=preferences)


async def on_appointment_cancelled(
    event: booking.AppointmentCancelled, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """Pending messages about the appointment are cancelled, and the patient told once per
    cancellation: appointments released with a course's first one join its notice."""
    repo = repository(uow)
    appointment = await repo.appointment(event.appointment_id)
    if appointment is not None:
        appointment.status = AppointmentStatus.CANCELLED
        await repo.put_appointment(appointment)
    await cancel_pending(uow, [event.appointment_id], "appointment_cancelled")
    revision = appointment.revision if appointment is not None else 0
    # an appointment notify never heard of still gets a calendar cancel, by its id
    end = appointment.end if appointment is not None else event.start + timedelta(hours=1)
    slot = _slot(event.appointment_id, event.start, end, revision + 1)
    if event.reason == "series_released" and await _join_course_notice(uow, event, slot):
        return
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.CANCELLATION,
            event.reason,
            event.cancelled_at,
            key=f"cancellation:{event.appointment_id}",
            subject_id=event.course_id,
            facts={
                "course_id": str(event.course_id),
                "fee_cents": 0 if event.fee_waived else event.fee_cents,
                "appointments": [slot],
            },
        ),
    )


async def _join_course_notice(
    uow: SqlUnitOfWork, event: booking.AppointmentCancelled, slot: dict[str, Any]
) -> bool:
    repo = repository(uow)
    notices = [
        m
        for m in await repo.pending(subject_ids=[event.course_id], kinds=[Kind.CANCELLATION])
        if m.status is Status.SCHEDULED
    ]
    for notice in notices:
        notice.facts = {**notice.facts, "appointments": [*notice.facts["appointments"], slot]}
        notice.updated_at = uow.clock.now()
        await repo.save(notice)
    return bool(notices)


async def _appointment_over(
    uow: SqlUnitOfWork, appointment_id: UUID, status: AppointmentStatus
) -> KnownAppointment | None:
    repo = repository(uow)
    appointment = await repo.appointment(appointment_id)
    if appointment is not None:
        appointment.status = status
        await repo.put_appointment(appointment)
    await cancel_pending(uow, [appointment_id], status.value, kinds=REMINDER_KINDS)
    return appointment


def _over(status: AppointmentStatus) -> Handler:
    """The handler of an event that ends an appointment: its reminders are cancelled."""

    async def handle(event: Any, context: EventContext, uow: SqlUnitOfWork) -> None:
        await _appointment_over(uow, event.appointment_id, status)

    return handle


on_checked_in = _over(AppointmentStatus.CHECKED_IN)
on_no_show = _over(AppointmentStatus.NO_SHOW)
on_consult_completed = _over(AppointmentStatus.COMPLETED)


async def on_infusion_completed(
    event: booking.InfusionCompleted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """The course's last infusion starts aftercare, when the clinic offers it."""
    await _appointment_over(uow, event.appointment_id, AppointmentStatus.COMPLETED)
    course = await repository(uow).course_appointments(event.course_id)
    if any(a.status is AppointmentStatus.BOOKED for a in course):
        return
    preferences = await preferences_of(uow, event.patient_id)
    found = schedule.aftercare(
        event.completed_at,
        event.family == "mood",
        uow.policy.notify.aftercare,
        clinic_zone(uow),
        quiet_windows(uow, preferences),
    )
    url = uow.policy.notify.aftercare.questionnaire_url
    await schedule_messages(
        uow,
        event.patient_id,
        *[
            Planned(
                Kind.AFTERCARE,
                r.step,
                r.planned_at,
                key=f"aftercare:{event.course_id}:{r.step}",
                subject_id=event.course_id,
                facts={"day": int(r.step.rsplit("_", 1)[1]), "questionnaire_url": url},
                due_at=r.due_at,
            )
            for r in found
        ],
        preferences=preferences,
    )


# waitlist --------------------------------------------------------------------------------------


async def on_offer_made(
    event: waitlist.OfferMade, context: EventContext, uow: SqlUnitOfWork
) -> None:
    preferences = await preferences_of(uow, event.patient_id)
    found = schedule.offer_reminders(
        event.made_at,
        event.expires_at,
        uow.policy.notify,
        clinic_zone(uow),
        quiet_windows(uow, preferences),
    )
    facts = {
        "offer_id": str(event.offer_id),
        "expires_at": event.expires_at.isoformat(),
        "first_slot_start": event.first_slot_start.isoformat(),
        "appointments": len(event.appointment_ids),
    }
    await schedule_messages(
        uow,
        event.patient_id,
        *[
            Planned(
                Kind.WAITLIST_OFFER,
                r.step,
                r.planned_at,
                key=f"waitlist_offer:{event.offer_id}:{r.step}",
                send_by=event.expires_at,
                subject_id=event.offer_id,
                facts=facts,
                due_at=r.due_at,
            )
            for r in found
        ],
        preferences=preferences,
    )


async def on_offer_accepted(
    event: waitlist.OfferAccepted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await cancel_pending(uow, [event.offer_id], "offer_accepted")


async def on_offer_booked(
    event: waitlist.OfferBooked, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await cancel_pending(uow, [event.offer_id], "offer_booked")


async def on_offer_closed(
    event: waitlist.OfferClosed, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await cancel_pending(uow, [event.offer_id], f"offer_{event.outcome}")
    if event.outcome != "failed":
        return
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.WAITLIST_OFFER,
            "unavailable",
            event.closed_at,
            key=f"waitlist_offer:{event.offer_id}:unavailable",
            subject_id=event.offer_id,
            facts={"offer_id": str(event.offer_id)},
        ),
    )


# billing ---------------------------------------------------------------------------------------


async def on_payment_succeeded(
    event: billing.PaymentSucceeded, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.RECEIPT,
            event.kind,
            event.paid_at,
            key=f"receipt:{event.charge_id}",
            subject_id=event.charge_id,
            facts={
                "charge_id": str(event.charge_id),
                "amount_cents": event.amount_cents,
                "currency": event.currency,
                "paid_at": event.paid_at.isoformat(),
            },
        ),
    )


async def on_payment_failed(
    event: billing.PaymentFailed, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.PAYMENT_FAILED,
            "final" if event.final else "will_retry",
            event.failed_at,
            key=f"payment_failed:{event.charge_id}:{event.attempt}",
            subject_id=event.charge_id,
            facts={
                "charge_id": str(event.charge_id),
                "amount_cents": event.amount_cents,
                "currency": event.currency,
                "next_attempt_at": (
                    event.next_attempt_at.isoformat() if event.next_attempt_at else None
                ),
            },
        ),
    )


async def on_plan_delinquent(
    event: billing.PlanDelinquent, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await schedule_messages(
        uow,
        event.patient_id,
        Planned(
            Kind.PLAN_DELINQUENT,
            "delinquent",
            event.delinquent_at,
            key=f"plan_delinquent:{event.plan_id}",
            subject_id=event.plan_id,
            facts={"plan_id": str(event.plan_id), "amount_cents": event.overdue_cents},
        ),
    )


# patients --------------------------------------------------------------------------------------


async def messages_for(patient_id: UUID, uow: SqlUnitOfWork) -> list[Message]:
    return await repository(uow).for_patient(patient_id)


async def set_preferences(preferences: Preferences, uow: SqlUnitOfWork) -> Preferences:
    """Store the patient's preferences and apply them to what is still pending: each pending
    message goes to the channels its kind now takes (a text turned off becomes an e-mail, a
    channel turned on joins), and due times are placed out of the new quiet hours."""
    repo = repository(uow)
    now = uow.clock.now()
    await repo.put_preferences(preferences, now)
    allowed = preferences.allowed()
    windows = quiet_windows(uow, preferences)
    zone = clinic_zone(uow)
    groups: dict[str, list[Message]] = {}
    for message in await repo.pending(patient_id=preferences.patient_id):
        if message.status is Status.SCHEDULED:  # a claimed one goes out as it is
            groups.setdefault(message.dedupe_key.rsplit(":", 1)[0], []).append(message)
    for base, messages in groups.items():
        wanted = channels_for(messages[0].kind, allowed)
        for message in messages:
            if message.channel not in wanted:
                message.status, message.last_error = Status.CANCELLED, "channel_turned_off"
            elif message.attempts == 0:  # one waiting out a provider's refusal keeps its backoff
                message.due_at = schedule.place(message.planned_at, now, windows, zone)
            message.updated_at = now
            await repo.save(message)
        have = {m.channel for m in messages}
        for channel in (c for c in wanted if c not in have):
            await _reopen_on(
                repo, messages[0], f"{base}:{channel.value}", channel, now, windows, zone
            )
    return preferences


async def _reopen_on(
    repo: NotifyRepository,
    like: Message,
    key: str,
    channel: Channel,
    now: datetime,
    windows: Sequence[QuietHours],
    zone: ZoneInfo,
) -> None:
    """The message `like` on another channel: the one turned off before comes back, else a
    new one."""
    due = schedule.place(like.planned_at, now, windows, zone)
    earlier = await repo.by_key(key)
    if earlier is not None:
        if earlier.status is Status.CANCELLED and earlier.last_error == "channel_turned_off":
            earlier.status, earlier.last_error, earlier.due_at = Status.SCHEDULED, None, due
            earlier.updated_at = now
            await repo.save(earlier)
        return
    copy = Message.new(
        patient_id=like.patient_id,
        kind=like.kind,
        step=like.step,
        channel=channel,
        dedupe_key=key,
        planned_at=like.planned_at,
        due_at=due,
        send_by=like.send_by,
        now=now,
        subject_id=like.subject_id,
        facts=like.facts,
    )
    await repo.add_messages([copy])

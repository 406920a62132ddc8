"""The dispatcher sends each scheduled message once: at its time and never in quiet hours, to the
address booking gives for the patient, through the send ledger committed before each provider
call. Refusals are tried again with backoff, a cut-off call is never repeated, stale claims are
reaped, a cancellation wins over a claim, and two dispatchers at once send nothing twice.

E-mail goes to a real SMTP server (aiosmtpd); texts to a recording provider whose answers the
tests choose. The clock moves only by hand (Portland: quiet hours 21:00-08:00)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import icalendar
import pytest

from clinic_shared.contracts import billing, booking
from clinic_shared.duequeue import drain
from notify.adapters.email import MESSAGE_ID_DOMAIN
from notify.domain.model import Channel, Kind, Message, Status
from notify.domain.ports import Contact, DeliveryDeferred, DeliveryRejected
from notify.service_layer.scheduling import repository

from .conftest import NOW, Booked, Desk, book, local

SENT = "notify.message.sent.v1"
FAILED = "notify.message.failed.v1"
ADDRESS = "ada.quinn@example.com"
PHONE = "+15035550111"
CLAIM_TIMEOUT = timedelta(seconds=300)


def cancellation(
    desk: Desk, patient_id: UUID, booked: Booked, n: int = 0
) -> booking.AppointmentCancelled:
    slot = booked.slots[n]
    return booking.AppointmentCancelled(
        appointment_id=slot.appointment_id,
        course_id=booked.course_id,
        patient_id=patient_id,
        start=slot.start,
        cancelled_at=desk.clock.now(),
        cancelled_by="patient",
        timing="on_time",
        seconds_before_start=int((slot.start - desk.clock.now()).total_seconds()),
        fee_cents=0,
        fee_waived=False,
        reason="cancelled",
    )


async def messages(desk: Desk, patient_id: UUID) -> list[Message]:
    async with desk.uow_factory() as uow:
        return await repository(uow).for_patient(patient_id)


async def the_message(desk: Desk, patient_id: UUID, kind: Kind, channel: Channel) -> Message:
    [found] = [
        m for m in await messages(desk, patient_id) if (m.kind, m.channel) == (kind, channel)
    ]
    return found


async def reload(desk: Desk, message: Message) -> Message:
    async with desk.uow_factory() as uow:
        found = await repository(uow).get(message.id)
    assert found is not None
    return found


async def ledger(desk: Desk, message: Message) -> list[dict[str, Any]]:
    async with desk.uow_factory() as uow:
        return await repository(uow).deliveries(message.id)


async def payloads(desk: Desk, event_type: str, message: Message) -> list[dict[str, Any]]:
    return [
        dict(e["payload"])
        for e in await desk.events(event_type)
        if e["payload"]["message_id"] == str(message.id)
    ]


def message_id(message: Message) -> str:
    return f"<{message.id}@{MESSAGE_ID_DOMAIN}>"


def the_calendar(message: EmailMessage) -> tuple[EmailMessage, icalendar.Calendar]:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return parts[0], icalendar.Calendar.from_ical(payload)


async def claim(desk: Desk, status: Status, claimed_at: datetime) -> Message:
    """What a dispatcher that died after claiming (or after opening its ledger row) leaves."""
    async with desk.uow_factory() as uow:
        repo = repository(uow)
        message = await repo.claim_due(desk.clock.now())
        assert message is not None
        message.status, message.claim_token, message.claimed_at = status, uuid.uuid4(), claimed_at
        if status is Status.SENDING:
            message.attempts = 1
            await repo.open_delivery(message, 1, None, claimed_at)
        await repo.save(message)
        await uow.commit()
    return message


# 1. e-mail through SMTP, with its calendar ---------------------------------------------------


async def test_a_course_confirmation_is_emailed_once_with_its_calendar(desk: Desk) -> None:
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-01T13:00", "2026-12-03T10:30"])

    await desk.run_due()
    desk.clock.advance(timedelta(minutes=5))
    await desk.run_due()  # nothing more is due: nothing goes out again

    confirmation = await the_message(desk, patient, Kind.CONFIRMATION, Channel.EMAIL)
    assert desk.smtp.recipients == [[ADDRESS]]
    [sent] = desk.emails()
    assert sent["To"] == ADDRESS
    assert sent["Message-ID"] == message_id(confirmation)
    part, calendar = the_calendar(sent)
    assert part.get_param("method") == "REQUEST"
    assert calendar["METHOD"] == "REQUEST"
    events = calendar.walk("VEVENT")
    assert len(events) == 2
    starts = {str(e["UID"]): e.decoded("DTSTART") for e in events}
    assert starts == {
        f"{slot.appointment_id}@clinic-notify": slot.start.astimezone(UTC) for slot in booked.slots
    }
    assert all(start.utcoffset() == timedelta(0) for start in starts.values())
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    assert b"DTSTART:20261201T210000Z" in raw  # 13:00 in Portland, written in UTC
    assert {e.decoded("SEQUENCE") for e in events} == {0}
    assert {str(e["STATUS"]) for e in events} == {"CONFIRMED"}

    [shown] = [
        n
        for n in await desk.notifications(patient)
        if (n["kind"], n["channel"]) == ("confirmation", "email")
    ]
    assert shown["status"] == "sent"
    assert datetime.fromisoformat(shown["sent_at"]) == NOW
    assert shown["attempts"] == 1
    [row] = await ledger(desk, confirmation)
    assert (row["attempt"], row["outcome"], row["provider_ref"]) == (
        1,
        "accepted",
        message_id(confirmation),
    )
    assert row["recipient_digest"] is None  # kept for texts only
    [payload] = await payloads(desk, SENT, confirmation)
    assert set(payload) == {"patient_id", "message_id", "channel", "attempt", "sent_at"}
    assert (payload["patient_id"], payload["channel"], payload["attempt"]) == (
        str(patient),
        "email",
        1,
    )
    text = json.dumps(payload)
    for secret in ("confirmation", "Ada", ADDRESS, PHONE, "mood"):
        assert secret not in text


async def test_a_cancellation_email_cancels_the_calendar_event_with_a_higher_sequence(
    desk: Desk,
) -> None:
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-01T13:00", "2026-12-03T10:30"])
    await desk.run_due()
    desk.clock.advance(timedelta(hours=1))

    assert await desk.deliver(cancellation(desk, patient, booked))
    await desk.run_due()

    notice = await the_message(desk, patient, Kind.CANCELLATION, Channel.EMAIL)
    confirmed, cancelled = desk.emails()
    assert cancelled["Message-ID"] == message_id(notice)
    assert cancelled["To"] == ADDRESS
    part, calendar = the_calendar(cancelled)
    assert part.get_param("method") == "CANCEL"
    assert calendar["METHOD"] == "CANCEL"
    [event] = calendar.walk("VEVENT")
    [first] = [
        e for e in the_calendar(confirmed)[1].walk("VEVENT") if str(e["UID"]) == str(event["UID"])
    ]
    assert str(event["UID"]) == f"{booked.slots[0].appointment_id}@clinic-notify"
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.decoded("DTSTART") == booked.slots[0].start
    assert event.decoded("SEQUENCE") > first.decoded("SEQUENCE")
    assert (await reload(desk, notice)).status is Status.SENT


# 2. texts: to the contact's phone, and nothing that tells the treatment -------------------------

FORBIDDEN = (
    "ketamine",
    "infusion",
    "depression",
    "benzodiazepine",
    "cannabis",
    "lamotrigine",
    "demo ketamine infusion clinic",
    ADDRESS,
    "pain_induction",
    "mood_induction",
)
DIAGNOSIS_CODE = re.compile(r"\b[A-TV-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?\b")


async def test_texts_go_to_the_contact_phone_and_never_name_the_patient_or_treatment(
    desk: Desk,
) -> None:
    mood = desk.new_patient(frozenset({"benzodiazepine", "cannabis", "lamotrigine"}))
    pain = desk.new_patient(email_address="bo.pike@example.com", phone="+15035550122")
    await book(desk, mood, ["2026-11-24T14:00"])
    await book(desk, pain, ["2026-11-24T15:00"], family="pain")

    desk.clock.set(local("2026-11-24T12:30"))  # every reminder due, neither visit begun
    await desk.run_due()

    sent = {m.id: m for p in (mood, pain) for m in await messages(desk, p)}
    texts = [(sent[UUID(t.reference)], t) for t in desk.sms.sent]
    by_kind = {(m.patient_id, m.kind.value, m.step): t.to for m, t in texts}
    assert len(by_kind) == len(texts)  # each once
    assert by_kind == {  # each to its patient's own phone
        (mood, "confirmation", "course"): PHONE,
        (mood, "fasting", "evening_before"): PHONE,
        (mood, "fasting", "window_opens"): PHONE,
        (mood, "ride_home", "24h_before"): PHONE,
        (mood, "medication_hold", "benzodiazepine"): PHONE,
        (mood, "medication_hold", "cannabis"): PHONE,
        (mood, "medication_hold", "lamotrigine"): PHONE,
        (pain, "confirmation", "course"): "+15035550122",
        (pain, "fasting", "evening_before"): "+15035550122",
        (pain, "fasting", "window_opens"): "+15035550122",
        (pain, "ride_home", "24h_before"): "+15035550122",
    }
    for message, text in texts:
        assert text.body.startswith("Demo Clinic: "), text.body
        assert not re.search(r"\b(Ada|Bo)\b", text.body), text.body
        lowered = text.body.lower()
        for word in FORBIDDEN:
            assert word not in lowered, (word, text.body)
        assert not DIAGNOSIS_CODE.search(text.body), text.body
        assert (await reload(desk, message)).status is Status.SENT
        [row] = await ledger(desk, message)
        assert row["outcome"] == "accepted" and row["recipient_digest"]  # a digest, not the number
        assert text.to not in str(row)

    [pain_ride] = [t for m, t in texts if (m.patient_id, m.kind) == (pain, Kind.RIDE_HOME)]
    [mood_ride] = [t for m, t in texts if (m.patient_id, m.kind) == (mood, Kind.RIDE_HOME)]
    assert "must come inside the clinic" in pain_ride.body
    assert "inside" not in mood_ride.body
    assert "Reply YES" in mood_ride.body and "Tuesday, November 24 at 2:00 PM" in mood_ride.body
    [hold] = [t for m, t in texts if m.step == "benzodiazepine"]
    assert "pause it from Monday, November 23" in hold.body


# 3. never early, never in quiet hours, never too late ------------------------------------------


async def test_nothing_is_sent_before_its_due_time(desk: Desk) -> None:
    patient = desk.new_patient()
    await book(desk, patient, ["2026-11-24T14:00"])
    await desk.run_due()
    ride = await the_message(desk, patient, Kind.RIDE_HOME, Channel.SMS)
    assert ride.due_at == local("2026-11-23T14:00")
    confirmations = len(desk.sms.sent)
    assert confirmations == 1

    desk.clock.set(ride.due_at - timedelta(seconds=1))
    await desk.run_due()
    assert len(desk.sms.sent) == confirmations
    assert (await reload(desk, ride)).status is Status.SCHEDULED

    desk.clock.set(ride.due_at)
    await desk.run_due()
    [text] = desk.sms.sent[confirmations:]
    assert text.reference == str(ride.id)
    assert (await reload(desk, ride)).status is Status.SENT
    fasting = [m for m in await messages(desk, patient) if m.kind is Kind.FASTING]
    assert {m.status for m in fasting} == {Status.SCHEDULED}  # due later that evening


async def test_a_message_due_when_quiet_hours_come_waits_for_8_am(desk: Desk) -> None:
    patient = desk.new_patient()
    assert await desk.deliver(
        billing.PaymentSucceeded(
            patient_id=patient,
            charge_id=uuid.uuid4(),
            kind="infusion",
            amount_cents=45000,
            currency="usd",
            paid_at=NOW,
        )
    )
    receipt = await the_message(desk, patient, Kind.RECEIPT, Channel.EMAIL)
    assert receipt.due_at == NOW

    desk.clock.set(local("2026-11-20T22:30"))  # the dispatcher was down all day
    await desk.run_due()

    assert desk.smtp.messages == []
    held = await reload(desk, receipt)
    assert (held.status, held.due_at, held.attempts) == (
        Status.SCHEDULED,
        local("2026-11-21T08:00"),
        0,
    )
    desk.clock.set(local("2026-11-21T07:59:59"))
    await desk.run_due()
    assert desk.smtp.messages == []

    desk.clock.set(local("2026-11-21T08:00"))
    await desk.run_due()
    [sent] = desk.emails()
    assert sent["Message-ID"] == message_id(receipt)
    assert (await reload(desk, receipt)).sent_at == local("2026-11-21T08:00")


async def test_a_text_deferred_into_quiet_hours_goes_out_at_8_am(desk: Desk) -> None:
    patient = desk.new_patient()
    desk.clock.set(local("2026-11-20T20:58"))
    assert await desk.deliver(
        billing.PaymentFailed(
            patient_id=patient,
            charge_id=uuid.uuid4(),
            kind="infusion",
            amount_cents=45000,
            currency="usd",
            failure_code="card_declined",
            attempt=1,
            final=True,
            failed_at=desk.clock.now(),
        )
    )
    desk.sms.fail_with = DeliveryDeferred("30003")
    await desk.run_due()  # 20:58: refused for now, again at 20:59
    desk.clock.set(local("2026-11-20T20:59"))
    await desk.run_due()  # 20:59: refused again, next at 21:01, in quiet hours
    text = await the_message(desk, patient, Kind.PAYMENT_FAILED, Channel.SMS)
    assert (text.status, text.attempts, text.due_at) == (
        Status.SCHEDULED,
        2,
        local("2026-11-20T21:01"),
    )
    desk.sms.fail_with = None

    desk.clock.set(text.due_at)
    await desk.run_due()

    assert desk.sms.sent == []
    held = await reload(desk, text)
    assert (held.status, held.due_at, held.attempts) == (
        Status.SCHEDULED,
        local("2026-11-21T08:00"),
        2,
    )
    assert len(await ledger(desk, text)) == 2

    desk.clock.set(local("2026-11-21T08:00"))
    await desk.run_due()
    [sent] = desk.sms.sent
    assert (sent.reference, sent.to) == (str(text.id), PHONE)
    assert [r["outcome"] for r in await ledger(desk, text)] == ["deferred", "deferred", "accepted"]


async def test_a_message_past_its_moment_expires_and_is_never_sent(desk: Desk) -> None:
    patient = desk.new_patient(frozenset({"benzodiazepine"}))
    await book(desk, patient, ["2026-11-24T14:00"])

    desk.clock.set(local("2026-11-24T14:00"))  # the dispatcher was down until the visit began
    await desk.run_due()
    desk.clock.advance(timedelta(days=2))
    await desk.run_due()

    assert desk.smtp.messages == []
    assert desk.sms.sent == []
    found = await messages(desk, patient)
    assert {(m.kind, m.step) for m in found} == {
        (Kind.CONFIRMATION, "course"),
        (Kind.FASTING, "evening_before"),
        (Kind.FASTING, "window_opens"),
        (Kind.RIDE_HOME, "24h_before"),
        (Kind.MEDICATION_HOLD, "benzodiazepine"),
    }
    assert {m.status for m in found} == {Status.EXPIRED}
    for message in found:
        assert await ledger(desk, message) == []
    assert await desk.events(SENT) == []


# 4. provider refusals and calls cut off ----------------------------------------------------------


async def test_a_text_refused_for_now_backs_off_exponentially_then_fails(desk: Desk) -> None:
    patient = desk.new_patient()
    await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    desk.sms.fail_with = DeliveryDeferred("30003")

    await desk.run_due()
    text = await the_message(desk, patient, Kind.CONFIRMATION, Channel.SMS)
    for attempt, wait in enumerate((60, 120, 240, 480, 960), start=1):
        text = await reload(desk, text)
        assert (text.status, text.attempts, text.last_error) == (
            Status.SCHEDULED,
            attempt,
            "30003",
        )
        assert text.due_at == desk.clock.now() + timedelta(seconds=wait)
        desk.clock.advance(timedelta(seconds=wait - 1))
        await desk.run_due()
        assert (await reload(desk, text)).attempts == attempt  # not due yet
        desk.clock.advance(timedelta(seconds=1))
        await desk.run_due()

    failed = await reload(desk, text)
    assert (failed.status, failed.attempts, failed.last_error) == (
        Status.FAILED,
        6,
        "out_of_attempts",
    )
    rows = await ledger(desk, text)
    assert [(r["attempt"], r["outcome"], r["error"]) for r in rows] == [
        (n, "deferred", "30003") for n in range(1, 7)
    ]
    [payload] = await payloads(desk, FAILED, text)
    assert (payload["outcome"], payload["reason"], payload["channel"]) == (
        "failed",
        "out_of_attempts",
        "sms",
    )
    assert await payloads(desk, SENT, text) == []

    desk.sms.fail_with = None
    desk.clock.advance(timedelta(hours=2))
    await desk.run_due()
    assert desk.sms.sent == []
    assert len(desk.emails()) == 1  # the e-mail went out the first time, once


@pytest.mark.parametrize(
    ("error", "status", "ledger_row", "reason"),
    [
        (DeliveryRejected("21211"), Status.FAILED, ("rejected", "21211"), "rejected"),
        (ConnectionResetError(104, "reset"), Status.UNKNOWN, ("unknown", "cut_off"), "cut_off"),
    ],
    ids=["rejected", "cut-off"],
)
async def test_a_text_refused_for_good_or_cut_off_is_never_tried_again(
    desk: Desk,
    error: BaseException,
    status: Status,
    ledger_row: tuple[str, str],
    reason: str,
) -> None:
    patient = desk.new_patient()
    await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    desk.sms.fail_with = error

    await desk.run_due()
    desk.sms.fail_with = None
    for _ in range(3):
        desk.clock.advance(timedelta(hours=6))
        await desk.run_due()

    assert desk.sms.sent == []
    text = await the_message(desk, patient, Kind.CONFIRMATION, Channel.SMS)
    assert (text.status, text.attempts, text.last_error, text.sent_at) == (
        status,
        1,
        reason,
        None,
    )
    [row] = await ledger(desk, text)
    assert (row["outcome"], row["error"], row["finished_at"]) == (*ledger_row, NOW)
    [payload] = await payloads(desk, FAILED, text)
    assert (payload["outcome"], payload["reason"]) == (status.value, reason)
    assert await payloads(desk, SENT, text) == []


# 5. the reaper ---------------------------------------------------------------------------------


async def test_a_claim_whose_dispatcher_died_is_released_and_then_sent_once(desk: Desk) -> None:
    patient = desk.new_patient()
    assert await desk.deliver(
        booking.PatientRegistered(patient_id=patient, registered_at=NOW, registered_by="patient")
    )
    welcome = await claim(desk, Status.CLAIMED, NOW)

    desk.clock.set(NOW + CLAIM_TIMEOUT)  # not stale yet: its dispatcher may still be at work
    await desk.run_due()
    assert desk.smtp.messages == []
    assert (await reload(desk, welcome)).status is Status.CLAIMED

    desk.clock.advance(timedelta(seconds=1))
    await desk.run_due()
    await desk.run_due()
    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()

    [sent] = desk.emails()
    assert sent["Message-ID"] == message_id(welcome)
    done = await reload(desk, welcome)
    assert (done.status, done.attempts) == (Status.SENT, 1)
    assert [r["outcome"] for r in await ledger(desk, welcome)] == ["accepted"]
    assert len(await payloads(desk, SENT, welcome)) == 1


async def test_a_send_whose_dispatcher_died_mid_call_becomes_unknown_and_never_goes_again(
    desk: Desk,
) -> None:
    patient = desk.new_patient()
    assert await desk.deliver(
        booking.PatientRegistered(patient_id=patient, registered_at=NOW, registered_by="patient")
    )
    welcome = await claim(desk, Status.SENDING, NOW - timedelta(minutes=10))

    await desk.run_due()
    desk.clock.advance(timedelta(days=1))
    await desk.run_due()

    assert desk.smtp.messages == []
    lost = await reload(desk, welcome)
    assert (lost.status, lost.last_error, lost.attempts) == (Status.UNKNOWN, "cut_off", 1)
    [row] = await ledger(desk, welcome)
    assert (row["outcome"], row["error"], row["finished_at"]) == ("unknown", "cut_off", NOW)
    [payload] = await payloads(desk, FAILED, welcome)
    assert (payload["outcome"], payload["reason"], payload["channel"]) == (
        "unknown",
        "cut_off",
        "email",
    )


# 6. a cancellation wins over a claim ------------------------------------------------------------


async def test_a_reminder_cancelled_after_it_was_claimed_is_not_sent(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-11-24T14:00"])
    await desk.run_due()  # the confirmations
    before = len(desk.sms.sent)
    desk.clock.set(local("2026-11-23T14:00"))  # the ride-home text is due, nothing else
    ride = await the_message(desk, patient, Kind.RIDE_HOME, Channel.SMS)
    lookup = desk.directory.contact
    cancelled: list[UUID] = []

    async def contact(patient_id: UUID) -> Contact | None:
        # step 2, between the claim and the send ledger: booking cancels the appointment
        if not cancelled:
            cancelled.append(patient_id)
            assert (await reload(desk, ride)).status is Status.CLAIMED
            assert await desk.deliver(cancellation(desk, patient, booked))
        return await lookup(patient_id)

    monkeypatch.setattr(desk.directory, "contact", contact)
    await desk.run_due()

    assert cancelled == [patient]
    dropped = await reload(desk, ride)
    assert (dropped.status, dropped.attempts, dropped.last_error) == (
        Status.CANCELLED,
        0,
        "appointment_cancelled",
    )
    assert await ledger(desk, ride) == []
    later = desk.sms.sent[before:]
    assert str(ride.id) not in {t.reference for t in later}
    assert all("drive you home" not in t.body for t in later)
    # the patient hears of the cancellation instead
    [notice] = later
    assert "is cancelled" in notice.body


async def test_start_sending_needs_our_claim_still_in_place(desk: Desk) -> None:
    patient = desk.new_patient()
    assert await desk.deliver(
        booking.PatientRegistered(patient_id=patient, registered_at=NOW, registered_by="patient")
    )
    welcome = await claim(desk, Status.CLAIMED, NOW)
    assert welcome.claim_token is not None

    async with desk.uow_factory() as uow:
        assert not await repository(uow).start_sending(welcome, uuid.uuid4(), NOW)
    async with desk.uow_factory() as uow:
        repo = repository(uow)
        cancelled = await repo.get(welcome.id)
        assert cancelled is not None
        cancelled.status = Status.CANCELLED
        await repo.save(cancelled)
        assert not await repo.start_sending(welcome, welcome.claim_token, NOW)
        await uow.rollback()
    async with desk.uow_factory() as uow:
        assert await repository(uow).start_sending(welcome, welcome.claim_token, NOW)
        await uow.commit()

    started = await reload(desk, welcome)
    assert (started.status, started.attempts) == (Status.SENDING, 1)


# 7. two dispatchers at once ---------------------------------------------------------------------


async def test_two_dispatchers_at_once_send_every_message_exactly_once(desk: Desk) -> None:
    patients = [
        desk.new_patient(email_address=f"p{n}@example.com", phone=f"+1503555{n:04d}")
        for n in range(10)
    ]
    for patient in patients:
        await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    due = [m for p in patients for m in await messages(desk, p)]
    assert len(due) == 20

    claimed = await asyncio.gather(
        drain([desk.deliveries()], desk.uow_factory),
        drain([desk.deliveries()], desk.uow_factory),
    )

    assert sum(claimed) == 20
    emails = {m.id: m for m in due if m.channel is Channel.EMAIL}
    texts = {m.id: m for m in due if m.channel is Channel.SMS}
    ids = [e["Message-ID"] for e in desk.emails()]
    assert sorted(ids) == sorted(message_id(m) for m in emails.values())
    assert sorted(r[0] for r in desk.smtp.recipients) == sorted(
        f"p{n}@example.com" for n in range(10)
    )
    references = [t.reference for t in desk.sms.sent]
    assert sorted(references) == sorted(str(i) for i in texts)
    for message in due:
        assert (await reload(desk, message)).status is Status.SENT
        assert [r["outcome"] for r in await ledger(desk, message)] == ["accepted"]
    sent = [e["payload"]["message_id"] for e in await desk.events(SENT)]
    assert sorted(sent) == sorted(str(m.id) for m in due)


# 8. booking out of reach, and no address --------------------------------------------------------


async def test_without_booking_nothing_is_sent_until_it_answers_again(desk: Desk) -> None:
    patient = desk.new_patient()
    await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    desk.directory.unavailable = True

    await desk.run_due()

    assert desk.smtp.messages == []
    assert desk.sms.sent == []
    waiting = await messages(desk, patient)
    for message in waiting:
        assert (message.status, message.attempts, message.last_error) == (
            Status.SCHEDULED,
            0,
            "contact_unavailable",
        )
        assert message.due_at == NOW + timedelta(seconds=60)
        assert message.claim_token is None
        assert await ledger(desk, message) == []

    desk.directory.unavailable = False
    desk.clock.advance(timedelta(seconds=59))
    await desk.run_due()
    assert desk.smtp.messages == [] and desk.sms.sent == []
    desk.clock.advance(timedelta(seconds=1))
    await desk.run_due()
    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()

    assert desk.smtp.recipients == [[ADDRESS]]
    assert [t.to for t in desk.sms.sent] == [PHONE]
    for message in waiting:
        done = await reload(desk, message)
        assert (done.status, done.attempts) == (Status.SENT, 1)
        assert [r["outcome"] for r in await ledger(desk, message)] == ["accepted"]


async def test_a_text_to_a_patient_without_a_phone_fails_with_no_address(desk: Desk) -> None:
    patient = desk.new_patient(phone=None)
    await book(desk, patient, ["2026-12-10T13:00"], appointments=False)

    await desk.run_due()
    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()

    assert desk.sms.sent == []
    assert desk.smtp.recipients == [[ADDRESS]]
    text = await the_message(desk, patient, Kind.CONFIRMATION, Channel.SMS)
    assert (text.status, text.last_error, text.attempts) == (Status.FAILED, "no_address", 0)
    assert await ledger(desk, text) == []
    [payload] = await payloads(desk, FAILED, text)
    assert (payload["outcome"], payload["reason"], payload["channel"]) == (
        "failed",
        "no_address",
        "sms",
    )
    email = await the_message(desk, patient, Kind.CONFIRMATION, Channel.EMAIL)
    assert (await reload(desk, email)).status is Status.SENT


# regressions --------------------------------------------------------------------------------------


class _HeldTexts:
    """An SMS provider whose answer comes only when the test lets it."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.answer = asyncio.Event()
        self.sent = 0

    async def send(self, message: Any) -> str:
        self.called.set()
        await self.answer.wait()
        self.sent += 1
        return "SM-late"

    async def close(self) -> None:
        return None


async def test_a_provider_answer_after_the_reaper_settled_it_changes_nothing_but_the_ledger(
    desk: Desk,
) -> None:
    patient = desk.new_patient()
    await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    held = _HeldTexts()
    desk.sms = held  # type: ignore[assignment]
    desk.smtp.data_reply = "451 try later"  # the e-mail waits; the text is the one in flight
    sending = asyncio.create_task(drain([desk.deliveries()], desk.uow_factory))
    await asyncio.wait_for(held.called.wait(), 10)

    desk.clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    from notify.service_layer.delivery import StaleClaims

    assert await StaleClaims().run_one(desk.uow_factory)
    held.answer.set()
    await asyncio.wait_for(sending, 10)
    desk.smtp.data_reply = None
    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()

    text = await the_message(desk, patient, Kind.CONFIRMATION, Channel.SMS)
    assert (text.status, text.last_error) == (Status.UNKNOWN, "cut_off")
    [row] = await ledger(desk, text)
    assert (row["outcome"], row["provider_ref"]) == ("accepted", "SM-late")
    assert held.sent == 1  # and never again
    assert await payloads(desk, SENT, text) == []


async def test_a_cancellation_of_an_appointment_notify_never_heard_of_is_still_sent(
    desk: Desk,
) -> None:
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-10T13:00"], appointments=False)
    assert await desk.deliver(cancellation(desk, patient, booked))

    await desk.run_due()

    notice = await the_message(desk, patient, Kind.CANCELLATION, Channel.EMAIL)
    assert notice.status is Status.SENT
    [mail] = [m for m in desk.emails() if "cancelled" in str(m["Subject"])]
    _, calendar = the_calendar(mail)
    [event] = calendar.walk("VEVENT")
    assert event.decoded("DTEND") > event.decoded("DTSTART")


async def test_a_change_notice_updates_the_calendar_event_it_first_sent(desk: Desk) -> None:
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-10T13:00"])
    await desk.run_due()
    assert await desk.deliver(
        booking.AppointmentRescheduled(
            appointment_id=booked.slots[0].appointment_id,
            course_id=booked.course_id,
            patient_id=patient,
            previous_start=booked.slots[0].start,
            start=local("2026-12-11T10:00"),
            end=local("2026-12-11T12:00"),
            resource_id="chair-1",
            timing="on_time",
            fee_cents=0,
            fee_waived=False,
            rescheduled_at=desk.clock.now(),
            rescheduled_by="patient",
        )
    )
    await desk.run_due()

    [_, first] = the_calendar(next(m for m in desk.emails() if "booked" in str(m["Subject"])))
    [_, moved] = the_calendar(next(m for m in desk.emails() if "moved" in str(m["Subject"])))
    [before], [after] = first.walk("VEVENT"), moved.walk("VEVENT")
    assert str(moved["METHOD"]) == "REQUEST"
    assert str(after["UID"]) == str(before["UID"])
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
    assert after.decoded("DTSTART") == local("2026-12-11T10:00")
    [text] = [t.body for t in desk.sms.sent if "moved" in t.body]
    assert "Friday, December 11 at 10:00 AM" in text


async def test_push_goes_to_the_registered_device_under_the_neutral_sender(desk: Desk) -> None:
    patient = desk.new_patient(frozenset({"cannabis"}))
    device = "device-token-0123456789"
    preferences = await desk.client.put(
        f"/v1/patients/{patient}/preferences",
        json={"channels": ["email", "sms", "push"], "push_device": device},
        headers=desk.patient(patient),
    )
    assert preferences.status_code == 200, preferences.text
    await book(desk, patient, ["2026-11-24T14:00"])

    desk.clock.set(local("2026-11-24T12:30"))
    await desk.run_due()

    pushed = {(t.to, t.title) for t in desk.push.sent}
    assert pushed == {(device, "Demo Clinic")}
    assert len(desk.push.sent) == len(desk.sms.sent)  # the same reminders, on both
    for message in desk.push.sent:
        lowered = message.body.lower()
        assert "ada" not in lowered and not DIAGNOSIS_CODE.search(message.body)
        for word in FORBIDDEN:
            assert word not in lowered, (word, message.body)

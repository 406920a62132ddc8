"""Events become scheduled messages with exact due times on the clinic's clock (Portland: quiet
hours 21:00-08:00, the evening reminder at 18:00), and stay true when appointments and offers
change: reschedules move them, cancellations and check-ins cancel them, nothing fires for a
cancelled appointment."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from clinic_shared.contracts import billing, booking, waitlist
from clinic_shared.envelope import Envelope
from clinic_shared.policy import parse_policy
from clinic_shared.testing import apply_once

from .conftest import LA, NOW, book, local


def shown(messages: list[dict[str, Any]], *kinds: str) -> list[tuple[str, str, str, str]]:
    """(kind, step, channel, clinic-local due time) of the patient's messages of those kinds."""
    return sorted(
        (
            m["kind"],
            m["step"],
            m["channel"],
            datetime.fromisoformat(m["due_at"]).astimezone(LA).strftime("%m-%d %H:%M"),
        )
        for m in messages
        if not kinds or m["kind"] in kinds
    )


def moved(desk: Any, patient: UUID, booked: Any, to: str) -> booking.AppointmentRescheduled:
    """Booking moved the course's first appointment to `to` (clinic-local), on time."""
    slot = booked.slots[0]
    return booking.AppointmentRescheduled(
        appointment_id=slot.appointment_id,
        course_id=booked.course_id,
        patient_id=patient,
        previous_start=slot.start,
        start=local(to),
        end=local(to) + (slot.end - slot.start),
        resource_id=slot.resource_id,
        timing="on_time",
        fee_cents=0,
        fee_waived=False,
        rescheduled_at=desk.clock.now(),
        rescheduled_by="patient",
    )


REMINDERS = ("fasting", "ride_home", "medication_hold")


async def test_a_mood_course_gets_its_confirmation_and_every_reminder_on_the_clinic_clock(desk):
    patient = desk.new_patient()
    await book(
        desk,
        patient,
        ["2026-12-01T13:00", "2026-12-03T13:00", "2026-12-05T10:00", "2026-12-08T09:00"],
    )

    messages = await desk.notifications(patient)

    assert shown(messages, "confirmation") == [
        ("confirmation", "course", "email", "11-20 09:05"),
        ("confirmation", "course", "sms", "11-20 09:05"),
    ]
    assert shown(messages, *REMINDERS) == sorted(
        [
            ("ride_home", "24h_before", "sms", "11-30 13:00"),
            ("fasting", "evening_before", "sms", "11-30 18:00"),
            ("fasting", "window_opens", "sms", "12-01 09:00"),
            ("ride_home", "24h_before", "sms", "12-02 13:00"),
            ("fasting", "evening_before", "sms", "12-02 18:00"),
            ("fasting", "window_opens", "sms", "12-03 09:00"),
            # 10:00 and 09:00 starts: the fasting window opens in quiet hours (06:00, 05:00),
            # so the evening message says it and no second one is sent
            ("ride_home", "24h_before", "sms", "12-04 10:00"),
            ("fasting", "evening_before", "sms", "12-04 18:00"),
            ("ride_home", "24h_before", "sms", "12-07 09:00"),
            ("fasting", "evening_before", "sms", "12-07 18:00"),
        ]
    )
    assert {m["status"] for m in messages} == {"scheduled"}


async def test_a_pain_course_of_five_consecutive_days_has_a_ride_reminder_before_each(desk):
    patient = desk.new_patient()
    days = [f"2026-12-{d:02d}T08:00" for d in range(7, 12)]
    booked = await book(desk, patient, days, family="pain", hours=4)

    messages = await desk.notifications(patient)

    rides = shown(messages, "ride_home")
    assert rides == [("ride_home", "24h_before", "sms", f"12-{d:02d} 08:00") for d in range(6, 11)]
    evenings = shown(messages, "fasting")
    assert evenings == [
        ("fasting", "evening_before", "sms", f"12-{d:02d} 18:00") for d in range(6, 11)
    ]
    async with desk.uow_factory() as uow:
        from notify.service_layer.scheduling import repository

        pending = await repository(uow).pending(subject_ids=booked.appointment_ids[:1])
    assert {m.facts["pickup_inside"] for m in pending} == {True}


async def test_an_appointment_just_after_the_spring_change_keeps_its_local_times(desk):
    # 2027-03-14 02:00 PST -> 03:00 PDT; the appointment is Monday 03-15 at 13:00 PDT
    patient = desk.new_patient()
    await book(desk, patient, ["2027-03-15T13:00"])

    by_step = {
        m["step"]: datetime.fromisoformat(m["due_at"]) for m in await desk.notifications(patient)
    }

    assert by_step["24h_before"] == local("2027-03-14T13:00")
    assert by_step["24h_before"] == datetime(2027, 3, 14, 20, 0, tzinfo=UTC)  # 13:00 PDT
    assert by_step["evening_before"] == datetime(2027, 3, 15, 1, 0, tzinfo=UTC)  # 18:00 PDT
    assert by_step["window_opens"] == datetime(2027, 3, 15, 16, 0, tzinfo=UTC)  # 09:00 PDT


async def test_an_appointment_on_the_spring_change_day_counts_the_fasting_window_in_hours(desk):
    # Sunday 2027-03-14 11:00 PDT: 4 elapsed hours before is 06:00 PDT... in quiet hours, so
    # none; a 14:00 start has its window at 10:00 PDT, 4 real hours earlier
    patient = desk.new_patient()
    await book(desk, patient, ["2027-03-14T14:00"])

    by_step = {
        m["step"]: datetime.fromisoformat(m["due_at"]) for m in await desk.notifications(patient)
    }

    start = local("2027-03-14T14:00").astimezone(UTC)
    assert start - by_step["window_opens"] == timedelta(hours=4)
    assert by_step["24h_before"] == local("2027-03-13T14:00")  # PST, 23 real hours before
    assert start - by_step["24h_before"] == timedelta(hours=23)


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (frozenset({"benzodiazepine"}), [("benzodiazepine", "12-09 18:00")]),
        (frozenset({"cannabis"}), [("cannabis", "12-07 18:00")]),
        (
            frozenset({"lamotrigine", "cannabis"}),
            [("cannabis", "12-07 18:00"), ("lamotrigine", "12-09 18:00")],
        ),
        (frozenset(), []),
    ],
    ids=["benzodiazepine", "cannabis", "both", "neither"],
)
async def test_medication_holds_follow_the_intake(desk, classes, expected):
    patient = desk.new_patient(medication_classes=classes)
    await book(desk, patient, ["2026-12-10T13:00"])

    holds = [
        (step, due)
        for _kind, step, _channel, due in shown(
            await desk.notifications(patient), "medication_hold"
        )
    ]

    assert holds == expected


async def test_a_reschedule_moves_pending_reminders_and_sends_a_change_notice(desk):
    patient = desk.new_patient(medication_classes=frozenset({"cannabis"}))
    booked = await book(desk, patient, ["2026-12-10T13:00"])
    before = {
        (m["kind"], m["step"]): m["id"]
        for m in await desk.notifications(patient)
        if m["kind"] in REMINDERS
    }

    assert await desk.deliver(moved(desk, patient, booked, "2026-12-15T10:00"))

    messages = await desk.notifications(patient)
    assert shown(messages, "change") == [
        ("change", "rescheduled", "email", "11-20 09:05"),
        ("change", "rescheduled", "sms", "11-20 09:05"),
    ]
    live = [m for m in messages if m["kind"] in REMINDERS and m["status"] == "scheduled"]
    assert shown(live) == sorted(
        [
            ("medication_hold", "cannabis", "sms", "12-12 18:00"),
            ("ride_home", "24h_before", "sms", "12-14 10:00"),
            ("fasting", "evening_before", "sms", "12-14 18:00"),
        ]
    )
    # the same messages, moved; the window reminder no longer applies (06:00 is quiet)
    assert {m["id"] for m in live} < set(before.values())
    [dropped] = [m for m in messages if m["id"] == before[("fasting", "window_opens")]]
    assert dropped["status"] == "cancelled"


async def test_a_reminder_already_sent_goes_out_again_for_the_new_time(desk):
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-10T13:00"])
    desk.clock.set(local("2026-12-09T13:30").astimezone(UTC))
    await desk.run_due()
    assert [m.body for m in desk.sms.sent if "drive you home" in m.body]

    assert await desk.deliver(moved(desk, patient, booked, "2026-12-17T13:00"))

    rides = [m for m in await desk.notifications(patient) if m["kind"] == "ride_home"]
    assert sorted((m["status"], m["due_at"][:10]) for m in rides) == [
        ("scheduled", "2026-12-16"),
        ("sent", "2026-12-09"),
    ]


async def test_a_cancellation_cancels_pending_messages_and_nothing_fires_for_it(desk):
    patient = desk.new_patient(medication_classes=frozenset({"benzodiazepine"}))
    booked = await book(desk, patient, ["2026-12-10T13:00"])
    await desk.run_due()  # the confirmation goes out now
    sent_before = len(desk.sms.sent)

    assert await desk.deliver(
        booking.AppointmentCancelled(
            appointment_id=booked.appointment_ids[0],
            course_id=booked.course_id,
            patient_id=patient,
            start=local("2026-12-10T13:00"),
            cancelled_at=desk.clock.now(),
            cancelled_by="patient",
            timing="on_time",
            seconds_before_start=1_000_000,
            fee_cents=0,
            fee_waived=False,
            reason="cancelled",
        )
    )

    messages = await desk.notifications(patient)
    assert {m["status"] for m in messages if m["kind"] in REMINDERS} == {"cancelled"}
    assert len([m for m in messages if m["kind"] in REMINDERS]) == 4
    assert shown(messages, "cancellation") == [
        ("cancellation", "cancelled", "email", "11-20 09:05"),
        ("cancellation", "cancelled", "sms", "11-20 09:05"),
    ]
    desk.clock.set(local("2026-12-10T12:00").astimezone(UTC))
    await desk.run_due()
    texts = [m.body for m in desk.sms.sent[sent_before:]]
    assert len(texts) == 1 and "cancelled" in texts[0]


async def test_a_released_series_joins_the_first_appointments_cancellation_notice(desk):
    patient = desk.new_patient()
    starts = ["2026-12-01T13:00", "2026-12-03T13:00", "2026-12-05T10:00"]
    booked = await book(desk, patient, starts)
    for n, (appointment_id, start) in enumerate(zip(booked.appointment_ids, starts, strict=True)):
        assert await desk.deliver(
            booking.AppointmentCancelled(
                appointment_id=appointment_id,
                course_id=booked.course_id,
                patient_id=patient,
                start=local(start),
                cancelled_at=desk.clock.now(),
                cancelled_by="patient",
                timing="on_time",
                seconds_before_start=1_000_000,
                fee_cents=0,
                fee_waived=False,
                reason="cancelled" if n == 0 else "series_released",
            )
        )

    notices = [m for m in await desk.notifications(patient) if m["kind"] == "cancellation"]
    assert sorted(m["channel"] for m in notices) == ["email", "sms"]
    await desk.run_due()
    [mail] = [m for m in desk.emails() if "cancelled" in m["Subject"]]
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert body.count("  - ") == 3  # the three appointments, in one notice
    assert "Tuesday, December 1 at 1:00 PM" in body


async def test_check_in_cancels_what_is_still_pending_for_the_appointment(desk):
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-11-21T13:00"])  # tomorrow
    assert await desk.deliver(
        booking.AppointmentCheckedIn(
            appointment_id=booked.appointment_ids[0],
            course_id=booked.course_id,
            patient_id=patient,
            checked_in_at=desk.clock.now(),
        )
    )

    reminders = [m for m in await desk.notifications(patient) if m["kind"] in REMINDERS]
    assert reminders and {m["status"] for m in reminders} == {"cancelled"}


async def test_the_same_appointment_told_twice_schedules_nothing_more(desk):
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-12-10T13:00"])
    count = len(await desk.notifications(patient))
    again = booking.AppointmentBooked(
        appointment_id=booked.appointment_ids[0],
        course_id=booked.course_id,
        patient_id=patient,
        protocol="mood_induction",
        family="mood",
        sequence=1,
        resource_id="chair-1",
        start=local("2026-12-10T13:00"),
        end=local("2026-12-10T15:00"),
        first_visit=True,
    )
    assert await desk.deliver(again)  # a new event id: the inbox does not know it

    assert len(await desk.notifications(patient)) == count


async def test_booking_out_of_reach_is_a_transient_failure_that_writes_nothing(desk):
    patient = desk.new_patient()
    desk.directory.unavailable = True
    event = booking.AppointmentBooked(
        appointment_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        patient_id=patient,
        protocol="mood_induction",
        family="mood",
        sequence=1,
        resource_id="chair-1",
        start=local("2026-12-10T13:00"),
        end=local("2026-12-10T15:00"),
        first_visit=True,
    )
    with pytest.raises(ConnectionError):  # transient: the consumer tries the event again later
        await desk.deliver(event)
    assert await desk.notifications(patient) == []

    desk.directory.unavailable = False
    assert await desk.deliver(event)
    assert len(await desk.notifications(patient)) == 3


async def test_an_offer_is_sent_at_once_and_recalled_before_it_expires(desk):
    patient = desk.new_patient()
    offer_id = uuid.uuid4()
    made = desk.clock.now()
    assert await desk.deliver(
        waitlist.OfferMade(
            offer_id=offer_id,
            entry_id=uuid.uuid4(),
            patient_id=patient,
            hold_id=uuid.uuid4(),
            block_id=uuid.uuid4(),
            appointment_ids=[uuid.uuid4(), uuid.uuid4()],
            protocol="mood_induction",
            first_slot_start=local("2026-11-24T13:00"),
            expires_at=made + timedelta(minutes=120),
            made_at=made,
            manual=False,
        )
    )

    offers = shown(await desk.notifications(patient), "waitlist_offer")
    assert offers == [
        ("waitlist_offer", "expiring", "email", "11-20 10:35"),
        ("waitlist_offer", "expiring", "sms", "11-20 10:35"),
        ("waitlist_offer", "offered", "email", "11-20 09:05"),
        ("waitlist_offer", "offered", "sms", "11-20 09:05"),
    ]

    assert await desk.deliver(
        waitlist.OfferAccepted(
            offer_id=offer_id,
            hold_id=uuid.uuid4(),
            patient_id=patient,
            appointment_ids=[uuid.uuid4()],
            protocol="mood_induction",
            accepted_at=made + timedelta(minutes=10),
        )
    )
    statuses = {
        (m["step"], m["status"])
        for m in await desk.notifications(patient)
        if m["kind"] == "waitlist_offer"
    }
    assert statuses == {("offered", "cancelled"), ("expiring", "cancelled")}  # nothing to say now


async def test_a_short_offer_is_recalled_half_way(desk):
    patient = desk.new_patient()
    made = desk.clock.now()
    assert await desk.deliver(
        waitlist.OfferMade(
            offer_id=uuid.uuid4(),
            entry_id=uuid.uuid4(),
            patient_id=patient,
            hold_id=uuid.uuid4(),
            block_id=uuid.uuid4(),
            appointment_ids=[uuid.uuid4()],
            protocol="booster",
            first_slot_start=local("2026-11-20T15:00"),
            expires_at=made + timedelta(minutes=30),
            made_at=made,
            manual=True,
        )
    )

    expiring = [m for m in await desk.notifications(patient) if m["step"] == "expiring"]
    assert {datetime.fromisoformat(m["due_at"]) for m in expiring} == {made + timedelta(minutes=15)}


async def test_a_failed_offer_booking_tells_the_patient(desk):
    patient = desk.new_patient()
    offer_id = uuid.uuid4()
    assert await desk.deliver(
        waitlist.OfferClosed(
            offer_id=offer_id,
            entry_id=uuid.uuid4(),
            patient_id=patient,
            hold_id=uuid.uuid4(),
            outcome="failed",
            reason="slot_taken",
            closed_at=desk.clock.now(),
        )
    )

    assert shown(await desk.notifications(patient), "waitlist_offer") == [
        ("waitlist_offer", "unavailable", "email", "11-20 09:05"),
        ("waitlist_offer", "unavailable", "sms", "11-20 09:05"),
    ]


async def test_billing_events_become_a_receipt_and_payment_notices(desk):
    patient = desk.new_patient()
    charge_id = uuid.uuid4()
    now = desk.clock.now()
    assert await desk.deliver(
        billing.PaymentSucceeded(
            patient_id=patient,
            charge_id=charge_id,
            kind="infusion",
            amount_cents=60000,
            currency="usd",
            paid_at=now,
        )
    )
    assert await desk.deliver(
        billing.PaymentFailed(
            patient_id=patient,
            charge_id=uuid.uuid4(),
            kind="installment",
            amount_cents=33334,
            currency="usd",
            failure_code="card_declined",
            attempt=1,
            final=False,
            next_attempt_at=now + timedelta(days=2),
            failed_at=now,
        )
    )
    assert await desk.deliver(
        billing.PlanDelinquent(
            patient_id=patient,
            plan_id=uuid.uuid4(),
            charge_id=uuid.uuid4(),
            overdue_cents=33334,
            delinquent_at=now,
        )
    )

    assert [(k, s, c) for k, s, c, _ in shown(await desk.notifications(patient))] == [
        ("payment_failed", "will_retry", "email"),
        ("payment_failed", "will_retry", "sms"),
        ("plan_delinquent", "delinquent", "email"),
        ("plan_delinquent", "delinquent", "sms"),
        ("receipt", "infusion", "email"),
    ]
    await desk.run_due()
    subjects = sorted(m["Subject"] for m in desk.emails())
    assert "Payment received: $600.00" in subjects
    assert any("$333.34" in m.body and "Sunday, November 22" in m.body for m in desk.sms.sent)


async def test_aftercare_follows_the_last_infusion_of_a_course_when_the_clinic_offers_it(desk):
    policy = parse_policy("notify:\n  aftercare:\n    enabled: true\n")
    factory = dataclasses.replace(desk.uow_factory, policy=policy)
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-11-23T13:00", "2026-11-25T13:00"])
    for n, appointment_id in enumerate(booked.appointment_ids, start=1):
        completed = booking.InfusionCompleted(
            appointment_id=appointment_id,
            course_id=booked.course_id,
            patient_id=patient,
            protocol="mood_induction",
            family="mood",
            ordinal=n,
            start=local(f"2026-11-{21 + 2 * n}T13:00"),
            completed_at=local(f"2026-11-{21 + 2 * n}T14:00"),
            infusion_minutes=40,
        )
        envelope = Envelope.wrap(completed, occurred_at=desk.clock.now())
        from notify.entrypoints.consumer import event_handlers

        assert await apply_once(factory, envelope, event_handlers(desk.directory), "notify")
        after_first = [m for m in await desk.notifications(patient) if m["kind"] == "aftercare"]
        if n == 1:
            assert after_first == []  # the course goes on

    aftercare = shown(await desk.notifications(patient), "aftercare")
    check_ins = [a for a in aftercare if a[1].startswith("check_in")]
    questionnaires = [a for a in aftercare if a[1].startswith("questionnaire")]
    assert len(check_ins) == 14 and {a[2] for a in check_ins} == {"sms"}
    assert ("aftercare", "check_in_1", "sms", "11-26 10:00") in check_ins
    assert ("aftercare", "check_in_14", "sms", "12-09 10:00") in check_ins
    assert [q[3] for q in questionnaires][:2] == ["12-09 10:00", "12-23 10:00"]
    assert len(questionnaires) == 6


async def test_aftercare_is_off_by_default(desk):
    patient = desk.new_patient()
    booked = await book(desk, patient, ["2026-11-23T13:00"])
    assert await desk.deliver(
        booking.InfusionCompleted(
            appointment_id=booked.appointment_ids[0],
            course_id=booked.course_id,
            patient_id=patient,
            protocol="mood_induction",
            family="mood",
            ordinal=1,
            start=local("2026-11-23T13:00"),
            completed_at=local("2026-11-23T14:00"),
            infusion_minutes=40,
        )
    )
    assert [m for m in await desk.notifications(patient) if m["kind"] == "aftercare"] == []


def test_now_is_a_friday_morning_in_portland():
    assert NOW.astimezone(LA) == local("2026-11-20T09:05")

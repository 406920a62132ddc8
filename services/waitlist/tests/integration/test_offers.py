"""Released blocks reach the right entry; every outcome of an offer; nothing doubles."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from clinic_shared.clock import FakeClock


async def test_a_released_series_is_offered_whole_to_the_first_entry_it_fits(desk):
    early, fits = desk.new_patient(), desk.new_patient()
    # Waiting longest, but never free on Wednesdays: the block's first slot is a Wednesday.
    await desk.waiting(early, weekdays=["mon", "tue", "thu", "fri"])
    await desk.waiting(fits, weekdays=["mon", "wed", "fri"], windows=[("08:00", "12:00")])
    released = await desk.release()

    assert await desk.offers(early) == []
    offer = await desk.only_offer(fits)
    assert {s["appointment_id"] for s in offer["slots"]} == {
        str(s.appointment_id) for s in released.slots
    }
    assert offer["protocol"] == "mood_induction" and offer["hold_id"] == str(released.hold_id)
    made = await desk.events("waitlist.offer.made.v1")
    assert len(made) == 1 and made[0]["payload"]["offer_id"] == offer["id"]
    # The first slot is five days away: the two-hour expiry applies.
    assert made[0]["payload"]["expires_at"].startswith("2026-11-20T19:05:00")


async def test_an_entry_whose_window_misses_one_slot_or_who_starts_later_is_skipped(desk):
    narrow, late, fits = desk.new_patient(), desk.new_patient(), desk.new_patient()
    await desk.waiting(narrow, windows=[("09:00", "10:00")])  # 09:00-10:30 does not fit
    await desk.waiting(late, earliest_start="2026-11-26")  # the first slot is the 25th
    await desk.waiting(fits, windows=[("09:00", "10:30")])
    await desk.release()
    assert await desk.offers(narrow) == [] and await desk.offers(late) == []
    assert (await desk.only_offer(fits))["status"] == "open"


async def test_a_slot_under_24_hours_away_gets_the_short_expiry(desk):
    patient = desk.new_patient()
    await desk.waiting(patient, "mood_booster")
    await desk.release(["2026-11-21T09:00:00-08:00"], kind="single")
    offer = await desk.only_offer(patient)
    made = (await desk.events("waitlist.offer.made.v1"))[0]["payload"]
    assert made["expires_at"].startswith("2026-11-20T17:35:00")
    assert offer["expires_at"].endswith("-08:00")  # shown in the clinic's zone


async def test_decline_moves_the_offer_to_the_next_entry_and_expiry_to_the_one_after(desk):
    a, b, c = desk.new_patient(), desk.new_patient(), desk.new_patient()
    for patient in (a, b, c):
        await desk.waiting(patient)
    await desk.release()

    declined = await desk.decline(await desk.only_offer(a))
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    to_b = await desk.only_offer(b)

    desk.clock.advance(timedelta(minutes=119))
    assert await desk.expire_due() == 0
    desk.clock.advance(timedelta(minutes=1))
    assert await desk.expire_due() == 1
    assert (await desk.offers(b))[0]["status"] == "expired"
    to_c = await desk.only_offer(c)
    assert to_c["block_id"] == to_b["block_id"]
    closed = [e["payload"]["outcome"] for e in await desk.events("waitlist.offer.closed.v1")]
    assert closed == ["declined", "expired"]
    desk.assert_problem(await desk.accept(to_b), 409, "offer_expired")


async def test_a_series_nobody_fits_is_split_into_single_slots_for_booster_and_maintenance(desk):
    booster, maintenance, induction = desk.new_patient(), desk.new_patient(), desk.new_patient()
    await desk.waiting(induction, weekdays=["tue"])  # fits no slot of the series
    await desk.waiting(booster, "mood_booster", weekdays=["wed"])
    await desk.waiting(maintenance, "maintenance", weekdays=["fri"])
    released = await desk.release()

    to_booster = await desk.only_offer(booster)
    to_maintenance = await desk.only_offer(maintenance)
    assert [s["start"][:10] for s in to_booster["slots"]] == ["2026-11-25"]
    assert [s["start"][:10] for s in to_maintenance["slots"]] == ["2026-11-27"]
    assert to_maintenance["protocol"] == "maintenance"
    assert await desk.offers(induction) == []

    blocks = (await desk.client.get("/v1/blocks", headers=desk.scheduler)).json()["blocks"]
    statuses = {b["id"]: b["status"] for b in blocks}
    assert statuses.pop(str(released.hold_id)) == "split"
    assert sorted(statuses.values()) == [
        "offered",
        "offered",
        "unclaimed",
        "unclaimed",
        "unclaimed",
    ]
    unclaimed = await desk.events("waitlist.slots.unclaimed.v1")
    assert sorted(len(e["payload"]["appointment_ids"]) for e in unclaimed) == [1, 1, 1]


async def test_a_slot_nobody_takes_is_handed_back_to_booking(desk):
    patient = desk.new_patient()
    await desk.waiting(patient, "mood_booster")
    released = await desk.release(["2026-11-30T09:00:00-08:00"], kind="single")
    await desk.decline(await desk.only_offer(patient))
    unclaimed = await desk.events("waitlist.slots.unclaimed.v1")
    assert len(unclaimed) == 1
    assert unclaimed[0]["payload"]["appointment_ids"] == [str(released.slots[0].appointment_id)]
    assert unclaimed[0]["message_key"] == str(released.hold_id)


async def test_accept_is_confirmed_by_booking_before_it_reads_accepted(desk):
    patient = desk.new_patient()
    entry_id = await desk.waiting(patient)
    await desk.release()
    offer = await desk.only_offer(patient)

    accepted = await desk.accept(offer)
    assert accepted.status_code == 202 and accepted.json()["status"] == "accepting"
    again = await desk.accept(offer)
    assert again.status_code == 202
    asks = await desk.events("waitlist.offer.accepted.v1")
    assert len(asks) == 1
    assert asks[0]["payload"]["appointment_ids"] == [s["appointment_id"] for s in offer["slots"]]

    # An accepted offer waiting for booking never expires under it.
    desk.clock.advance(timedelta(hours=3))
    assert await desk.expire_due() == 0

    reply = await desk.booked(offer)
    assert (await desk.deliver(reply, envelope=desk.delivered[-1])) is False  # redelivered
    final = await desk.only_offer(patient, "accepted")
    assert final["course_id"] == str(reply.course_id)
    entry = (await desk.client.get(f"/v1/entries/{entry_id}", headers=desk.scheduler)).json()
    assert entry["status"] == "fulfilled"
    assert len(await desk.events("waitlist.offer.booked.v1")) == 1
    history = await desk.client.get(f"/v1/entries/{entry_id}/offers", headers=desk.patient(patient))
    assert [o["status"] for o in history.json()["offers"]] == ["accepted"]


async def test_a_booking_refusal_fails_the_offer_and_the_block_moves_on(desk):
    uncleared, next_up = desk.new_patient(), desk.new_patient()
    await desk.waiting(uncleared)
    await desk.waiting(next_up)
    await desk.release()
    offer = await desk.only_offer(uncleared)
    await desk.accept(offer)
    await desk.rejected(offer, "intake_not_cleared")

    failed = (await desk.offers(uncleared))[0]
    assert failed["status"] == "failed" and failed["failure_reason"] == "intake_not_cleared"
    assert (await desk.only_offer(next_up))["block_id"] == offer["block_id"]


async def test_a_refusal_because_the_hold_is_gone_ends_the_block(desk):
    first, second = desk.new_patient(), desk.new_patient()
    await desk.waiting(first)
    await desk.waiting(second)
    await desk.release()
    offer = await desk.only_offer(first)
    await desk.accept(offer)
    await desk.rejected(offer, "slots_not_held")
    assert await desk.offers(second) == []
    assert len(await desk.events("waitlist.slots.unclaimed.v1")) == 1


async def test_a_patient_cannot_see_accept_or_decline_another_patients_offer(desk):
    owner, other = desk.new_patient(), desk.new_patient()
    await desk.waiting(owner)
    await desk.release()
    offer = await desk.only_offer(owner)

    for response in (
        await desk.client.get(f"/v1/offers/{offer['id']}", headers=desk.patient(other)),
        await desk.accept(offer, patient_id=other),
        await desk.decline(offer, patient_id=other),
    ):
        desk.assert_problem(response, 404, "not_found")
    listed = await desk.client.get(
        "/v1/offers", params={"patient_id": owner}, headers=desk.patient(other)
    )
    assert listed.json()["offers"] == []
    assert (await desk.only_offer(owner))["status"] == "open"
    assert await desk.events("waitlist.offer.accepted.v1") == []


async def test_a_scheduler_offers_a_block_to_a_chosen_entry_replacing_the_open_offer(desk):
    first, chosen, wrong = desk.new_patient(), desk.new_patient(), desk.new_patient()
    await desk.waiting(first)
    chosen_entry = await desk.waiting(chosen, weekdays=["sat"])  # matching would skip it
    wrong_entry = await desk.waiting(wrong, "mood_booster")
    await desk.release()
    current = await desk.only_offer(first)

    mismatch = await desk.client.post(
        "/v1/offers",
        json={"block_id": current["block_id"], "entry_id": wrong_entry},
        headers=desk.scheduler,
    )
    desk.assert_problem(mismatch, 409, "protocol_mismatch")
    patient_try = await desk.client.post(
        "/v1/offers",
        json={"block_id": current["block_id"], "entry_id": chosen_entry},
        headers=desk.patient(chosen),
    )
    desk.assert_problem(patient_try, 403)
    manual = await desk.client.post(
        "/v1/offers",
        json={"block_id": current["block_id"], "entry_id": chosen_entry},
        headers=desk.scheduler,
    )
    assert manual.status_code == 201, manual.text
    assert manual.json()["manual"] is True
    assert (await desk.offers(first))[0]["status"] == "withdrawn"
    assert (await desk.only_offer(chosen))["id"] == manual.json()["id"]


async def test_every_event_delivered_twice_changes_nothing(desk):
    a, b = desk.new_patient(), desk.new_patient()
    await desk.waiting(a)
    await desk.waiting(b)
    await desk.release()
    offer = await desk.only_offer(a)
    await desk.accept(offer)
    await desk.booked(offer)
    before = await desk.events()
    for envelope in list(desk.delivered):
        assert await desk.deliver(None, envelope=envelope) is False  # type: ignore[arg-type]
    assert await desk.events() == before
    assert await desk.offers(b) == []


async def test_figures_show_time_to_first_infusion_and_refilled_slots(desk):
    from clinic_shared.contracts import booking

    patient = desk.new_patient()
    await desk.waiting(patient)
    await desk.release()
    offer = await desk.only_offer(patient)
    desk.clock.advance(timedelta(minutes=30))
    await desk.accept(offer)
    course = await desk.booked(offer)
    first = offer["slots"][0]
    await desk.deliver(
        booking.InfusionCompleted(
            appointment_id=first["appointment_id"],
            course_id=course.course_id,
            patient_id=patient,
            protocol="mood_induction",
            family="mood",
            ordinal=1,
            start=first["start"],
            completed_at="2026-11-25T18:30:00Z",
            infusion_minutes=60,
        )
    )
    figures = (await desk.client.get("/v1/figures", headers=desk.scheduler)).json()
    reached = figures["entry_to_first_infusion"]
    assert reached["reached_first_infusion"] == 1 and reached["within_goal"] == 1
    assert reached["days"]["median"] == pytest.approx(5.06, abs=0.01)
    slots = figures["released_slots"]
    assert slots["released"] == 5 and slots["refilled"] == 5
    assert slots["minutes_to_refill"]["median"] == 30.0
    desk.assert_problem(await desk.client.get("/v1/figures", headers=desk.patient(patient)), 403)


# races: PostgreSQL's row locks and SQLite's single writer both make these one outcome


async def test_an_accept_racing_its_expiry_has_exactly_one_outcome(desk):
    for _ in range(5):
        patient = desk.new_patient()
        await desk.waiting(patient)
        await desk.release()
        offer = await desk.only_offer(patient)
        expires = desk.clock.now() + timedelta(hours=2)
        desk.clock.set(expires - timedelta(seconds=1))  # the patient's click: just in time
        dispatcher_clock = FakeClock(expires + timedelta(seconds=1))
        accepted, expired = await asyncio.gather(
            desk.accept(offer), desk.expire_due(dispatcher_clock)
        )
        final = (await desk.offers(patient))[0]["status"]
        if accepted.status_code == 202:
            assert final == "accepting" and expired == 0
        else:
            desk.assert_problem(accepted, 409)
            assert final == "expired" and expired == 1
        await desk.client.delete(f"/v1/entries/{offer['entry_id']}", headers=desk.scheduler)
    accepted_events = len(await desk.events("waitlist.offer.accepted.v1"))
    expired_events = [
        e
        for e in await desk.events("waitlist.offer.closed.v1")
        if e["payload"]["outcome"] == "expired"
    ]
    assert accepted_events + len(expired_events) == 5


async def test_two_blocks_released_at_once_never_offer_one_entry_twice(desk):
    only = desk.new_patient()
    await desk.waiting(only)
    await asyncio.gather(desk.release(), desk.release(desk.SERIES_STARTS, minutes=60))
    live = await desk.offers(only, "open")
    assert len(live) == 1
    blocks = (await desk.client.get("/v1/blocks", headers=desk.scheduler)).json()["blocks"]
    assert sum(1 for b in blocks if b["status"] == "offered") == 1


async def test_one_released_block_delivered_to_two_consumers_at_once_is_offered_once(desk):
    from clinic_shared.contracts import booking
    from clinic_shared.envelope import Envelope

    from .conftest import slot_facts

    patients = [desk.new_patient() for _ in range(3)]
    for patient in patients:
        await desk.waiting(patient)
    event = booking.BlockReleased(
        hold_id="5b3a3f52-0000-4000-8000-00000000b10c",
        source_course_id="5b3a3f52-0000-4000-8000-00000000c0c0",
        protocol="mood_induction",
        family="mood",
        kind="series",
        slots=slot_facts(desk.SERIES_STARTS),
        released_at=desk.clock.now(),
    )
    envelope = Envelope.wrap(event, occurred_at=desk.clock.now())
    applied = await asyncio.gather(
        desk.deliver(event, envelope=envelope), desk.deliver(event, envelope=envelope)
    )
    assert sorted(applied) == [False, True]
    offers = [o for p in patients for o in await desk.offers(p)]
    assert len(offers) == 1


async def test_waitlist_events_carry_ids_protocols_times_and_outcomes_only(desk):
    """No names, contact data, preferences or conditions leave the waitlist in an event."""
    patients = [desk.new_patient(condition="pain") for _ in range(3)]
    await desk.waiting(patients[0], windows=[("08:00", "12:00")])
    await desk.waiting(patients[1], "mood_booster")
    await desk.waiting(patients[2])
    await desk.release()
    offer = await desk.only_offer(patients[0])
    await desk.accept(offer)
    await desk.rejected(offer, "intake_not_cleared")
    await desk.decline(await desk.only_offer(patients[2]))
    allowed = {
        "offer_id", "entry_id", "patient_id", "hold_id", "block_id", "course_id",
        "appointment_ids", "protocol", "first_slot_start", "expires_at", "made_at", "manual",
        "booked_at", "outcome", "reason", "closed_at", "accepted_at", "decided_at",
    }  # fmt: skip
    events = await desk.events()
    assert {e["event_type"] for e in events} >= {
        "waitlist.offer.made.v1",
        "waitlist.offer.accepted.v1",
        "waitlist.offer.closed.v1",
        "waitlist.slots.unclaimed.v1",
    }
    for event in events:
        assert set(event["payload"]) <= allowed, event["event_type"]
        assert "pain" not in str(event["payload"])  # the patients' condition

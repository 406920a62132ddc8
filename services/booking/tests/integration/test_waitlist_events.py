"""Booking applying the waitlist's answers about held slots, through its real consumer handlers
and the inbox, on SQLite and PostgreSQL: booked once, refused clearly, released when unclaimed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clinic_shared.contracts
from booking.entrypoints.consumer import EVENT_HANDLERS
from clinic_shared.contracts import waitlist
from clinic_shared.envelope import Envelope
from clinic_shared.testing import apply_once

CONSUMER = "booking"
SAMPLES = Path(clinic_shared.contracts.__file__).parent / "samples"


async def _released_block(clinic):
    """A's mood course whose initial appointment A cancelled: five slots held for the waitlist."""
    a = await clinic.cleared_patient()
    course = (await clinic.book(a, "mood_induction", clinic.MOOD_COURSE)).json()
    cancelled = (await clinic.cancel(course["appointments"][0]["id"])).json()
    return cancelled["hold_id"], cancelled["held_appointment_ids"]


def _accepted(hold_id, appointment_ids, patient_id, protocol="mood_induction"):
    event = waitlist.OfferAccepted(
        offer_id=uuid.uuid4(),
        hold_id=hold_id,
        patient_id=patient_id,
        appointment_ids=appointment_ids,
        protocol=protocol,
        accepted_at=datetime(2026, 11, 20, 17, 30, tzinfo=UTC),
    )
    return Envelope.wrap(event, occurred_at=event.accepted_at, correlation_id="corr-offer")


async def _apply(clinic, envelope):
    return await apply_once(clinic.app.state.infra.uow_factory, envelope, EVENT_HANDLERS, CONSUMER)


async def test_an_accepted_offer_books_the_held_series_for_the_waiting_patient(clinic):
    hold_id, held = await _released_block(clinic)
    b = await clinic.register()
    assert (await clinic.submit_intake(b)).status_code == 200
    await clinic.client.post(
        f"/v1/patients/{b}/intake/clearance",
        json={"diagnosis_confirmed": True},
        headers=clinic.clinician,
    )
    envelope = _accepted(hold_id, held, b)

    assert await _apply(clinic, envelope) is True

    appointments = [await clinic.appointment(i) for i in held]
    assert {a["status"] for a in appointments} == {"booked"}
    assert {a["patient_id"] for a in appointments} == {b}
    assert [a["sequence"] for a in sorted(appointments, key=lambda a: a["start"])] == [
        1,
        2,
        3,
        4,
        5,
    ]
    first = min(appointments, key=lambda a: a["start"])
    assert first["first_visit"] is True  # lengthened to the first-visit chair time
    length = datetime.fromisoformat(first["end"]) - datetime.fromisoformat(first["start"])
    assert length == timedelta(minutes=150)
    [booked] = await clinic.events("booking.hold.booked.v1")
    assert booked["payload"]["offer_id"] == envelope.payload["offer_id"]
    assert sorted(booked["payload"]["appointment_ids"]) == sorted(held)
    [course] = [
        e for e in await clinic.events("booking.course.booked.v1") if e["payload"]["hold_id"]
    ]
    assert course["payload"]["patient_id"] == b
    holds = await clinic.client.get("/v1/holds", headers=clinic.scheduler)
    assert {h["id"]: h["status"] for h in holds.json()["holds"]}[hold_id] == "closed"
    clinic.assert_no_overlap(await clinic.live_occupancies())


async def test_a_redelivered_acceptance_books_nothing_twice(clinic):
    hold_id, held = await _released_block(clinic)
    b = await clinic.cleared_patient()
    envelope = _accepted(hold_id, held, b)
    assert await _apply(clinic, envelope) is True

    # The inbox stops the same event; the same answer under a new event id changes nothing.
    assert await _apply(clinic, envelope) is False
    again = Envelope.wrap(
        waitlist.OfferAccepted.model_validate(envelope.payload),
        occurred_at=datetime(2026, 11, 20, 17, 31, tzinfo=UTC),
    )
    assert await _apply(clinic, again) is True

    assert len(await clinic.events("booking.hold.booked.v1")) == 1
    assert len(await clinic.events("booking.course.booked.v1")) == 2
    listed = await clinic.client.get(
        "/v1/appointments", params={"patient_id": b}, headers=clinic.scheduler
    )
    assert len(listed.json()["appointments"]) == 5


async def test_an_acceptance_that_cannot_be_booked_is_answered_and_changes_nothing(clinic):
    hold_id, held = await _released_block(clinic)
    uncleared = await clinic.register()
    assert (await clinic.submit_intake(uncleared)).status_code == 200

    await _apply(clinic, _accepted(hold_id, held, uncleared))
    await _apply(clinic, _accepted(str(uuid.uuid4()), held, uncleared))

    rejected = await clinic.events("booking.hold.booking_rejected.v1")
    assert [e["payload"]["reason"] for e in rejected] == ["intake_not_cleared", "hold_not_found"]
    assert {(await clinic.appointment(i))["status"] for i in held} == {"held"}
    assert len(await clinic.events("booking.course.booked.v1")) == 1  # only A's


async def test_single_slots_of_a_split_block_go_to_booster_or_maintenance_patients(clinic):
    hold_id, held = await _released_block(clinic)
    maintenance = await clinic.cleared_patient()
    await _apply(clinic, _accepted(hold_id, held[:1], maintenance, "maintenance"))

    slot = await clinic.appointment(held[0])
    assert (slot["status"], slot["patient_id"], slot["protocol"]) == (
        "booked",
        maintenance,
        "maintenance",
    )
    assert {(await clinic.appointment(i))["status"] for i in held[1:]} == {"held"}
    holds = await clinic.client.get("/v1/holds", headers=clinic.scheduler)
    assert {h["id"]: h["status"] for h in holds.json()["holds"]}[hold_id] == "released"


async def test_unclaimed_held_slots_open_to_everybody(clinic):
    hold_id, held = await _released_block(clinic)
    unclaimed = waitlist.SlotsUnclaimed(
        hold_id=hold_id,
        appointment_ids=held,
        decided_at=datetime(2026, 11, 20, 19, 0, tzinfo=UTC),
    )
    envelope = Envelope.wrap(unclaimed, occurred_at=unclaimed.decided_at)

    await _apply(clinic, envelope)
    await _apply(clinic, Envelope.wrap(unclaimed, occurred_at=unclaimed.decided_at))

    assert {(await clinic.appointment(i))["status"] for i in held} == {"released"}
    [released] = await clinic.events("booking.hold.released.v1")
    assert released["payload"]["reason"] == "unclaimed"
    anyone = await clinic.cleared_patient()
    assert (await clinic.book(anyone, "maintenance", [clinic.MOOD_COURSE[2]])).status_code == 201


async def test_the_waitlists_committed_samples_go_through_bookings_handlers(clinic):
    for event_type in EVENT_HANDLERS:
        for sample in sorted((SAMPLES / event_type).glob("*.json")):
            payload = json.loads(sample.read_text())
            event = clinic_shared.contracts.parse_payload(event_type, payload)
            envelope = Envelope.wrap(event, occurred_at=datetime(2026, 11, 20, tzinfo=UTC))
            assert await _apply(clinic, envelope) is True, sample
    # The samples name a hold this database never had: answered, nothing booked.
    [rejected] = await clinic.events("booking.hold.booking_rejected.v1")
    assert rejected["payload"]["reason"] == "hold_not_found"
    assert await clinic.live_occupancies() == []

"""A released series over real Kafka: booking (api, relay, consumer as processes, PostgreSQL)
publishes the held block; the waitlist's acceptance, delivered twice, books it once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from clinic_shared.auth import Role
from clinic_shared.contracts import waitlist
from clinic_shared.contracts.registry import topic_for
from clinic_shared.envelope import Envelope, from_kafka, to_kafka
from clinic_shared.kafka import ensure_topics, make_producer
from clinic_shared.testing import read_topic

from .conftest import cleared_patient, eventually

pytestmark = pytest.mark.slow


async def _cleared_patient(client: httpx.AsyncClient, system) -> str:
    return str((await cleared_patient(client, system, first_name="Series", last_name="Test"))["id"])


async def _booking_events(kafka_bootstrap: str, event_type: str, **match: str) -> list[dict]:
    found = []
    for record in await read_topic(kafka_bootstrap, topic_for("booking")):
        envelope = from_kafka(record.key, record.value, list(record.headers))
        if envelope.event_type == event_type and all(
            envelope.payload.get(k) == v for k, v in match.items()
        ):
            found.append(envelope.payload)
    return found


async def test_a_cancelled_series_is_published_held_and_booked_once_for_the_accepting_patient(
    system, kafka_bootstrap
):
    system.start("booking", "relay")
    system.start("booking", "consumer")
    booking = system.urls["booking"]
    scheduler = system.headers(Role.SCHEDULER)
    async with httpx.AsyncClient(timeout=30) as client:
        a = await _cleared_patient(client, system)
        b = await _cleared_patient(client, system)
        offered = await client.get(
            f"{booking}/v1/availability",
            params={"protocol": "mood_induction", "patient_id": a, "limit": 1},
            headers=scheduler,
        )
        [option] = offered.json()["options"]
        course = await client.post(
            f"{booking}/v1/courses",
            json={"patient_id": a, "protocol": "mood_induction", "slots": option["slots"]},
            headers=scheduler,
        )
        assert course.status_code == 201, course.text
        initial = course.json()["appointments"][0]["id"]
        cancelled = await client.post(
            f"{booking}/v1/appointments/{initial}/cancel",
            json={"acknowledge_late_fee": True},
            headers=system.headers(Role.PATIENT, a),
        )
        assert cancelled.status_code == 200, cancelled.text
        hold_id = cancelled.json()["hold_id"]

        released: list[dict] = []

        async def block_published() -> bool:
            released[:] = await _booking_events(
                kafka_bootstrap, "booking.block.released.v1", hold_id=hold_id
            )
            return bool(released)

        await eventually(block_published, timeout=60, what="block released on Kafka")
        [block] = released
        assert block["kind"] == "series"
        slot_ids = [slot["appointment_id"] for slot in block["slots"]]
        assert len(slot_ids) == 5
        assert "Series" not in json.dumps(block)

        accepted = waitlist.OfferAccepted(
            offer_id=uuid.uuid4(),
            hold_id=uuid.UUID(hold_id),
            patient_id=uuid.UUID(b),
            appointment_ids=[uuid.UUID(i) for i in slot_ids],
            protocol="mood_induction",
            accepted_at=datetime.now(UTC),
        )
        envelope = Envelope.wrap(accepted, occurred_at=accepted.accepted_at)
        waitlist_topic = topic_for("waitlist")
        await ensure_topics(kafka_bootstrap, [waitlist_topic], 3)
        producer = make_producer(kafka_bootstrap, client_id="e2e-waitlist")
        await producer.start()
        try:
            key, value, headers = to_kafka(envelope)
            for _ in range(2):  # Kafka may deliver twice; so do we
                await producer.send_and_wait(waitlist_topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()

        async def booked_for_b() -> bool:
            listed = await client.get(
                f"{booking}/v1/appointments", params={"patient_id": b}, headers=scheduler
            )
            return len(listed.json()["appointments"]) == 5

        await eventually(booked_for_b, timeout=60, what="the series booked for B")

        replies: list[dict] = []

        async def replied() -> bool:
            replies[:] = await _booking_events(
                kafka_bootstrap, "booking.hold.booked.v1", hold_id=hold_id
            )
            return bool(replies)

        await eventually(replied, timeout=60, what="hold booked reply on Kafka")
        listed = await client.get(
            f"{booking}/v1/appointments", params={"patient_id": b}, headers=scheduler
        )
    appointments = listed.json()["appointments"]
    assert sorted(a["id"] for a in appointments) == sorted(slot_ids)
    assert {a["status"] for a in appointments} == {"booked"}
    assert len(replies) == 1
    assert replies[0]["offer_id"] == str(accepted.offer_id)

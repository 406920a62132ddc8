"""The thin flow across real processes: booking -> outbox -> relay -> Kafka -> notify,
and what happens when a relay or a consumer dies at the worst moment."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition

from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.contracts.registry import topic_for
from clinic_shared.db import create_engine
from clinic_shared.envelope import Envelope, from_kafka, to_kafka
from clinic_shared.faults import RELAY_AFTER_PUBLISH, RELAY_BEFORE_PUBLISH
from clinic_shared.kafka import dead_letter_topic, make_consumer, make_producer
from clinic_shared.policy import default_policy
from clinic_shared.testing import read_topic

from .conftest import System, eventually, make_system, notifications, register, wait_for_file

pytestmark = pytest.mark.slow
BOOKING_TOPIC = topic_for("booking")


async def _scalar(url: str, query: str, **params) -> object:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text(query), params)).scalar_one()
    finally:
        await engine.dispose()


async def _outbox_sent(system: System, patient_id: str) -> bool:
    sent = await _scalar(
        system.database_urls["booking"],
        "SELECT sent_at IS NOT NULL FROM outbox WHERE message_key = :key",
        key=patient_id,
    )
    return bool(sent)


async def _copies_on_topic(bootstrap: str, event_id: str) -> list[tuple[int, int]]:
    """(partition, offset) of every record on booking.events carrying this event id."""
    return [
        (r.partition, r.offset)
        for r in await read_topic(bootstrap, BOOKING_TOPIC)
        if dict(r.headers).get("ce_id") == event_id.encode()
    ]


async def _committed(bootstrap: str, group: str, partition: int) -> int:
    probe = make_consumer(bootstrap, group)
    await probe.start()
    try:
        return await probe.committed(TopicPartition(BOOKING_TOPIC, partition)) or 0
    finally:
        await probe.stop()


async def test_a_registration_reaches_notify_through_the_outbox_and_kafka(system: System):
    relay = system.start("booking", "relay")
    correlation_id = f"e2e-{uuid.uuid4()}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            patient = await register(client, system, **{"X-Correlation-ID": correlation_id})

            async def welcomed() -> bool:
                return bool(await notifications(client, system, patient["id"]))

            await eventually(welcomed, what="welcome notification")
            found = await notifications(client, system, patient["id"])
            seen_at = datetime.now(UTC)
    finally:
        assert relay.stop() == 0
    assert [(n["kind"], n["channel"], n["status"]) for n in found] == [
        ("welcome", "email", "scheduled")
    ]
    # due at once when notify scheduled it (never before the registration), or at the end of
    # the clinic's quiet hours when it came inside them
    due = datetime.fromisoformat(found[0]["due_at"])
    registered = datetime.fromisoformat(patient["registered_at"])
    quiet = default_policy().notify.quiet_hours
    assert registered <= due
    assert due <= seen_at or due.astimezone(default_policy().clinic.tz).time() == quiet.end
    carried = await _scalar(
        system.database_urls["booking"],
        "SELECT correlation_id FROM outbox WHERE message_key = :key",
        key=patient["id"],
    )
    assert carried == correlation_id


async def test_a_relay_killed_after_the_commit_and_before_publishing_publishes_after_restart(
    system: System, tmp_path
):
    marker = tmp_path / "fault"
    doomed = system.start(
        "booking", "relay", CLINIC_FAULT_POINT=RELAY_BEFORE_PUBLISH, CLINIC_FAULT_MARKER=str(marker)
    )
    async with httpx.AsyncClient(timeout=10) as client:
        patient = await register(client, system)
        await wait_for_file(marker)
        doomed.kill()
        assert not await _outbox_sent(system, patient["id"])
        assert await notifications(client, system, patient["id"]) == []

        relay = system.start("booking", "relay")
        try:

            async def welcomed() -> bool:
                return len(await notifications(client, system, patient["id"])) == 1

            await eventually(welcomed, what="welcome after the relay restarted")
        finally:
            relay.stop()
    assert await _outbox_sent(system, patient["id"])


async def test_a_relay_killed_after_publishing_and_before_marking_sent_is_applied_once(
    system: System, kafka_bootstrap: str, tmp_path
):
    marker = tmp_path / "fault"
    doomed = system.start(
        "booking", "relay", CLINIC_FAULT_POINT=RELAY_AFTER_PUBLISH, CLINIC_FAULT_MARKER=str(marker)
    )
    async with httpx.AsyncClient(timeout=10) as client:
        patient = await register(client, system)
        await wait_for_file(marker)
        doomed.kill()
        assert not await _outbox_sent(system, patient["id"])  # published, never marked

        relay = system.start("booking", "relay")
        try:

            async def marked_sent() -> bool:
                return await _outbox_sent(system, patient["id"])

            await eventually(marked_sent, what="outbox row marked sent after restart")
        finally:
            relay.stop()
        event_id = str(
            await _scalar(
                system.database_urls["booking"],
                "SELECT event_id FROM outbox WHERE message_key = :key",
                key=patient["id"],
            )
        )
        copies = await _copies_on_topic(kafka_bootstrap, event_id)
        assert len(copies) == 2  # the event really went out twice

        async def both_copies_consumed() -> bool:
            partition, last_offset = max(copies)
            return await _committed(kafka_bootstrap, "notify", partition) > last_offset

        await eventually(both_copies_consumed, what="notify past the second copy")
        assert len(await notifications(client, system, patient["id"])) == 1
    applied = await _scalar(
        system.database_urls["notify"],
        "SELECT count(*) FROM inbox WHERE event_id = :event_id",
        event_id=event_id,
    )
    assert applied == 1


async def test_a_consumer_killed_mid_batch_while_another_joins_applies_every_event_once(
    postgres_cluster, kafka_bootstrap: str, tmp_path
):
    group = f"notify-e2e-{uuid.uuid4().hex[:8]}"
    isolated = await asyncio.to_thread(
        make_system, postgres_cluster, kafka_bootstrap, tmp_path, group=group
    )
    group = isolated.env["NOTIFY_CONSUMER_GROUP"]  # the group, and the inbox's consumer name
    patient_ids = [uuid.uuid4() for _ in range(1500)]
    events = [
        Envelope.wrap(
            PatientRegistered(patient_id=p, registered_at=datetime.now(UTC), registered_by="staff"),
            occurred_at=datetime.now(UTC),
        )
        for p in patient_ids
    ]
    producer = make_producer(kafka_bootstrap, client_id="e2e-load")
    await producer.start()
    try:
        futures = []
        for envelope in events:
            key, value, headers = to_kafka(envelope)
            futures.append(
                await producer.send(BOOKING_TOPIC, value=value, key=key, headers=headers)
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ours = {e.event_id for e in events}
    notify_db = isolated.database_urls["notify"]

    async def applied() -> int:
        return int(await _scalar(notify_db, "SELECT count(*) FROM message"))

    def at_least(n: int):
        async def check() -> bool:
            return await applied() >= n

        return check

    async def every_one_of_ours_applied() -> bool:
        # The group reads booking.events from the start, earlier tests' events included, so
        # only our own event ids say when this test's work is done.
        return ours <= await _event_ids(notify_db, group)

    try:
        # notify asks booking for the intake of any appointment it sees booked (earlier tests'
        # events are on the topic too): booking answers, knowing none of those patients
        isolated.start("booking", "api")
        first = isolated.start("notify", "consumer")
        await eventually(at_least(200), timeout=60, what="first consumer under way")
        isolated.start("notify", "consumer")  # joins the group: a rebalance mid-batch
        await eventually(at_least(400), timeout=60, what="progress during the join")
        first.kill()
        await eventually(every_one_of_ours_applied, timeout=120, what="every event applied")
    finally:
        isolated.stop_all()
    registrations = await _scalar(
        notify_db,
        "SELECT count(*) FROM inbox WHERE consumer = :c AND event_type = :t",
        c=group,
        t=PatientRegistered.event_type,
    )
    assert ours <= await _event_ids(notify_db, group)
    welcomes = await _scalar(notify_db, "SELECT count(*) FROM message WHERE kind = 'welcome'")
    assert registrations == welcomes  # each registration applied once: one welcome each
    dead = await _copies_in_dlt(kafka_bootstrap, ours)
    assert dead == 0  # nothing fell back on the unique constraint and went to the DLT


async def _event_ids(url: str, consumer: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT event_id FROM inbox WHERE consumer = :c"), {"c": consumer}
            )
            return {r[0] for r in rows}
    finally:
        await engine.dispose()


async def _copies_in_dlt(bootstrap: str, event_ids: set[str]) -> int:
    records = await read_topic(bootstrap, dead_letter_topic(BOOKING_TOPIC))
    return sum(from_kafka(r.key, r.value, r.headers).event_id in event_ids for r in records)

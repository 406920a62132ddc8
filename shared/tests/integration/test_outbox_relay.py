"""The outbox relay against a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from clinic_shared.clock import SystemClock
from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.db import create_engine
from clinic_shared.envelope import from_kafka
from clinic_shared.kafka import make_producer
from clinic_shared.relay import OutboxRelay
from clinic_shared.testing import read_topic

from .conftest import ServiceDb, wait_until


def _event(patient_id: UUID) -> PatientRegistered:
    return PatientRegistered(
        patient_id=patient_id, registered_at=datetime.now(UTC), registered_by="staff"
    )


async def _write_events(db: ServiceDb, keys: list[UUID], per_key: int) -> dict[str, list[str]]:
    """Commit `per_key` events for each key, interleaved; the expected order per key."""
    expected: dict[str, list[str]] = defaultdict(list)
    for _round in range(per_key):
        for key in keys:
            async with db.uow_factory() as uow:
                envelope = await uow.publish(_event(key))
                await uow.commit()
            expected[str(key)].append(envelope.event_id)
    return expected


async def _relay(db: ServiceDb, bootstrap: str, **kwargs) -> tuple[OutboxRelay, object]:
    producer = make_producer(bootstrap, client_id=f"relay-{uuid4().hex[:6]}")
    await producer.start()
    engine = create_engine(db.url)
    relay = OutboxRelay(
        engine=engine,
        tables=db.tables,
        producer=producer,
        producer_name="booking",
        clock=SystemClock(),
        **kwargs,
    )
    return relay, (producer, engine)


async def _close(resources) -> None:
    producer, engine = resources
    await producer.stop()
    await engine.dispose()


def _by_key(records) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = from_kafka(record.key, record.value, record.headers)
        seen[envelope.key].append(envelope.event_id)
    return seen


async def _unsent(db: ServiceDb) -> int:
    async with db.engine.connect() as conn:
        outbox = db.tables.outbox
        query = sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def test_relay_publishes_committed_events_in_order_per_key_and_marks_them_sent(
    service_db: ServiceDb, kafka_bootstrap: str
):
    keys = [uuid4() for _ in range(3)]
    expected = await _write_events(service_db, keys, per_key=10)
    async with service_db.uow_factory() as uow:  # rolled back: never published
        rolled_back = await uow.publish(_event(keys[0]))
    relay, resources = await _relay(service_db, kafka_bootstrap, batch_size=7)
    try:
        while await relay.drain_once():
            pass
    finally:
        await _close(resources)
    records = await read_topic(kafka_bootstrap, service_db.topic)
    assert _by_key(records) == expected
    assert rolled_back.event_id not in {r.event_id for r in map(_envelope, records)}
    assert await _unsent(service_db) == 0


def _envelope(record):
    return from_kafka(record.key, record.value, record.headers)


async def test_events_written_together_are_published_in_the_order_given(
    service_db: ServiceDb, kafka_bootstrap: str
):
    key = uuid4()
    async with service_db.uow_factory() as uow:
        envelopes = await uow.publish_all([_event(key) for _ in range(5)])
        await uow.commit()
    relay, resources = await _relay(service_db, kafka_bootstrap)
    try:
        while await relay.drain_once():
            pass
    finally:
        await _close(resources)
    records = await read_topic(kafka_bootstrap, service_db.topic)
    assert _by_key(records) == {str(key): [envelope.event_id for envelope in envelopes]}
    assert await _unsent(service_db) == 0


async def test_two_relays_at_once_publish_each_event_once_in_order_per_key(
    service_db: ServiceDb, kafka_bootstrap: str
):
    keys = [uuid4() for _ in range(24)]
    expected = await _write_events(service_db, keys, per_key=8)
    first, first_resources = await _relay(service_db, kafka_bootstrap, batch_size=5)
    second, second_resources = await _relay(service_db, kafka_bootstrap, batch_size=5)
    stop = asyncio.Event()
    runners = [asyncio.create_task(r.run(stop)) for r in (first, second)]

    async def all_sent() -> bool:
        return await _unsent(service_db) == 0

    try:
        await wait_until(all_sent, timeout=60)
    finally:
        stop.set()
        await asyncio.gather(*runners)
        await _close(first_resources)
        await _close(second_resources)
    records = await read_topic(kafka_bootstrap, service_db.topic)
    ids = [_envelope(r).event_id for r in records]
    assert len(ids) == len(set(ids)) == 24 * 8  # each event published exactly once
    assert _by_key(records) == expected
    assert first.published + second.published == 24 * 8


@pytest.mark.parametrize("db_backend", ["postgres"])  # LISTEN/NOTIFY is PostgreSQL's
async def test_on_postgres_a_relay_whose_listening_connection_dies_listens_again(
    service_db: ServiceDb, kafka_bootstrap: str
):
    # Polls an hour apart: only a NOTIFY can wake this relay within the test.
    relay, resources = await _relay(
        service_db, kafka_bootstrap, poll_interval=3600, listening_poll_interval=3600
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        first = await _write_events(service_db, [uuid4()], 1)

        async def published(count: int):
            async def check() -> bool:
                return relay.published == count

            return check

        await wait_until(await published(1))
        async with service_db.engine.connect() as conn:
            killed = await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %' AND datname = current_database()"
                )
            )
            assert killed.scalars().all() == [True]
        second = await _write_events(service_db, [uuid4()], 1)
        await wait_until(await published(2))
    finally:
        stop.set()
        await task
        await _close(resources)
    assert await _unsent(service_db) == 0
    seen = _by_key(await read_topic(kafka_bootstrap, service_db.topic))
    assert seen == {**first, **second}

"""The inbox consumer against a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from aiokafka import TopicPartition

from clinic_shared.consumer import EventConsumer, PermanentFailure
from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.kafka import dead_letter_topic, make_consumer, make_producer
from clinic_shared.logging import correlation_id_var
from clinic_shared.testing import read_topic

from .conftest import ServiceDb, wait_until

EVENT_TYPE = PatientRegistered.event_type


def _message(patient_id=None, event_id=None) -> tuple[Envelope, tuple[bytes, bytes, list]]:
    event = PatientRegistered(
        patient_id=patient_id or uuid4(), registered_at=datetime.now(UTC), registered_by="staff"
    )
    envelope = Envelope.wrap(event, occurred_at=datetime.now(UTC), event_id=event_id)
    return envelope, to_kafka(envelope)


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes | None, list]]):
    producer = make_producer(bootstrap, client_id="test-producer")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def _recording_handler(db: ServiceDb, before: Callable[[], Awaitable[None]] | None = None):
    async def handler(event, context, uow) -> None:
        if before is not None:
            await before()
        await uow.session.execute(sa.insert(db.effect).values(event_id=context.envelope.event_id))

    return handler


class Running:
    """An EventConsumer running in the background on its own consumer group."""

    def __init__(self, db: ServiceDb, bootstrap: str, handler, **kwargs) -> None:
        self.group = f"test-{uuid.uuid4().hex[:8]}"
        self.kafka = make_consumer(bootstrap, self.group)
        self.dlt = make_producer(bootstrap, client_id=f"{self.group}-dlt")
        self.consumer = EventConsumer(
            name=self.group,
            consumer=self.kafka,
            dlt_producer=self.dlt,
            handlers={EVENT_TYPE: handler},
            uow_factory=db.uow_factory,
            retry_base_seconds=0.01,
            retry_max_seconds=0.05,
            poll_timeout_ms=200,
            **kwargs,
        )
        self.topic = db.topic
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Running:
        self.kafka.subscribe([self.topic], listener=self.consumer.rebalance_listener())
        await self.dlt.start()
        await self.kafka.start()
        self.task = asyncio.create_task(self.consumer.run(self.stop))
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.consumer.commit_processed()
        await self.kafka.stop()
        await self.dlt.stop()

    async def committed(self, partition: int) -> int | None:
        return await self.kafka.committed(TopicPartition(self.topic, partition))


async def test_the_same_event_delivered_ten_times_is_applied_once(
    service_db: ServiceDb, kafka_bootstrap: str
):
    envelope, message = _message()
    await _produce(kafka_bootstrap, service_db.topic, [message] * 10)
    async with Running(service_db, kafka_bootstrap, _recording_handler(service_db)) as running:

        async def all_seen() -> bool:
            return running.consumer.applied + running.consumer.duplicates == 10

        await wait_until(all_seen)
    assert await service_db.effects() == [envelope.event_id]
    assert running.consumer.duplicates == 9


async def test_a_malformed_message_is_dead_lettered_with_its_origin_and_the_partition_moves_on(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    good, good_message = _message()
    _, bad_payload = _message()
    key, _value, headers = bad_payload
    await _produce(
        kafka_bootstrap,
        single_partition_topic,
        [
            (key, b"\x00 not a cloudevent", []),
            (key, b'{"patient_id": "Jane Doe"}', headers),
            good_message,
        ],
    )
    async with Running(service_db, kafka_bootstrap, _recording_handler(service_db)) as running:

        async def good_applied() -> bool:
            return await service_db.effects() == [good.event_id]

        await wait_until(good_applied)

        async def offsets_committed() -> bool:
            return await running.committed(0) == 3

        await wait_until(offsets_committed)
    dead = await read_topic(kafka_bootstrap, dead_letter_topic(single_partition_topic))
    assert len(dead) == 2
    for offset, record in enumerate(dead):
        headers = dict(record.headers)
        assert headers["dlt.origin.topic"] == single_partition_topic.encode()
        assert headers["dlt.origin.partition"] == b"0"
        assert headers["dlt.origin.offset"] == str(offset).encode()
        assert headers["dlt.error.kind"] == b"malformed"
        assert b"Jane" not in headers["dlt.error"]  # no payload text in headers
    assert dead[1].value == b'{"patient_id": "Jane Doe"}'  # the message itself is kept


async def test_a_transient_failure_is_retried_and_the_event_applied_once(
    service_db: ServiceDb, kafka_bootstrap: str
):
    failures = {"left": 2}

    async def flaky() -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database away")

    envelope, message = _message()
    await _produce(kafka_bootstrap, service_db.topic, [message])
    async with Running(service_db, kafka_bootstrap, _recording_handler(service_db, flaky)):

        async def applied() -> bool:
            return await service_db.effects() == [envelope.event_id]

        await wait_until(applied)
    dead = await read_topic(kafka_bootstrap, dead_letter_topic(service_db.topic))
    assert dead == []


async def test_a_transient_failure_outlasting_its_retries_leaves_the_offset_uncommitted(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    attempts = {"n": 0}
    healed = asyncio.Event()

    async def down_until_healed() -> None:
        attempts["n"] += 1
        if not healed.is_set():
            raise ConnectionError("database away")

    envelope, message = _message()
    await _produce(kafka_bootstrap, single_partition_topic, [message])
    handler = _recording_handler(service_db, down_until_healed)
    async with Running(service_db, kafka_bootstrap, handler, max_transient_attempts=2) as running:

        async def retried_past_one_round() -> bool:
            return attempts["n"] >= 4  # two rounds of two attempts: the message was read again

        await wait_until(retried_past_one_round)
        assert await running.committed(0) in (None, 0)
        assert await service_db.effects() == []
        healed.set()

        async def applied() -> bool:
            return await service_db.effects() == [envelope.event_id]

        await wait_until(applied)

        async def committed() -> bool:
            return await running.committed(0) == 1

        await wait_until(committed)
    assert await read_topic(kafka_bootstrap, dead_letter_topic(single_partition_topic)) == []


async def test_a_permanently_failing_event_is_dead_lettered_and_the_next_one_applied(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    poisoned, poisoned_message = _message()
    good, good_message = _message()

    async def handler(event, context, uow) -> None:
        if context.envelope.event_id == poisoned.event_id:
            raise PermanentFailure("cannot apply")
        await uow.session.execute(sa.insert(service_db.effect).values(event_id=good.event_id))

    await _produce(kafka_bootstrap, single_partition_topic, [poisoned_message, good_message])
    async with Running(service_db, kafka_bootstrap, handler):

        async def good_applied() -> bool:
            return await service_db.effects() == [good.event_id]

        await wait_until(good_applied)
    dead = await read_topic(kafka_bootstrap, dead_letter_topic(single_partition_topic))
    assert [dict(r.headers)["dlt.error.kind"] for r in dead] == [b"handler_failed"]
    assert dict(dead[0].headers)["ce_id"] == poisoned.event_id.encode()


async def test_a_failed_handler_leaves_no_partial_state_behind(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    _envelope, message = _message()

    async def half_then_fail(event, context, uow) -> None:
        await uow.session.execute(sa.insert(service_db.effect).values(event_id="partial"))
        raise PermanentFailure("second step failed")

    await _produce(kafka_bootstrap, single_partition_topic, [message])
    async with Running(service_db, kafka_bootstrap, half_then_fail) as running:

        async def dead_lettered() -> bool:
            return running.consumer.dead_lettered == 1

        await wait_until(dead_lettered)
    assert await service_db.effects() == []
    async with service_db.engine.connect() as conn:
        inbox = service_db.tables.inbox
        count = (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one()
    assert count == 0  # the inbox row rolled back with the handler's writes


async def test_the_correlation_id_travels_from_the_headers_into_the_handler_and_its_events(
    service_db: ServiceDb, kafka_bootstrap: str
):
    seen: dict[str, str | None] = {}

    async def handler(event, context, uow) -> None:
        seen["correlation"] = correlation_id_var.get()
        follow_up = await uow.publish(event)  # an event caused by this one
        seen["outbox_correlation"] = follow_up.correlation_id
        seen["outbox_causation"] = follow_up.causation_id

    event = PatientRegistered(
        patient_id=uuid4(), registered_at=datetime.now(UTC), registered_by="staff"
    )
    envelope = Envelope.wrap(event, occurred_at=datetime.now(UTC), correlation_id="corr-42")
    await _produce(kafka_bootstrap, service_db.topic, [to_kafka(envelope)])
    async with Running(service_db, kafka_bootstrap, handler) as running:

        async def applied() -> bool:
            return running.consumer.applied == 1

        await wait_until(applied)
    assert seen == {
        "correlation": "corr-42",
        "outbox_correlation": "corr-42",
        "outbox_causation": envelope.event_id,
    }
    assert correlation_id_var.get() is None  # nothing leaks into the next message

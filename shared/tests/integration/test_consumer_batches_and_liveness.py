"""A backlog applied a batch per transaction, and liveness that sees a stuck consumer:
against a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import sqlalchemy as sa

from clinic_shared.consumer import Batchable, PermanentFailure
from clinic_shared.health import serve_health
from clinic_shared.kafka import dead_letter_topic
from clinic_shared.testing import free_port, read_topic
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory

from .conftest import ServiceDb, wait_until
from .test_event_consumer import Running, _message, _produce, _recording_handler


class CountingCommits:
    """The service's unit-of-work factory, counting the transactions that commit."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self._inner = inner
        self.commits = 0

    def __call__(self) -> SqlUnitOfWork:
        uow = self._inner()
        commit = uow.commit

        async def counted() -> None:
            await commit()
            self.commits += 1

        uow.commit = counted  # type: ignore[method-assign]
        return uow


async def test_a_backlog_is_applied_a_batch_per_transaction_each_event_once(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    messages = [_message() for _ in range(300)]
    await _produce(kafka_bootstrap, single_partition_topic, [m for _, m in messages])
    counting = CountingCommits(service_db.uow_factory)
    service_db.uow_factory = counting  # type: ignore[assignment]
    async with Running(service_db, kafka_bootstrap, _recording_handler(service_db)) as running:

        async def all_applied() -> bool:
            return running.consumer.applied == 300

        await wait_until(all_applied)
    assert await service_db.effects() == [envelope.event_id for envelope, _ in messages]
    assert counting.commits < 30, f"{counting.commits} transactions for 300 events"


async def test_a_batchable_handler_gets_runs_of_events_and_applies_each_once(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    runs: list[int] = []

    async def many(items: list[tuple[Any, Any]], uow: SqlUnitOfWork) -> None:
        runs.append(len(items))
        rows = [{"event_id": context.envelope.event_id} for _event, context in items]
        await uow.session.execute(sa.insert(service_db.effect), rows)

    handler = Batchable(_recording_handler(service_db), many)
    messages = [_message() for _ in range(200)]
    await _produce(kafka_bootstrap, single_partition_topic, [m for _, m in messages])
    await _produce(kafka_bootstrap, single_partition_topic, [messages[0][1]])  # redelivered
    async with Running(service_db, kafka_bootstrap, handler) as running:

        async def all_seen() -> bool:
            return running.consumer.applied + running.consumer.duplicates == 201

        await wait_until(all_seen)
    assert await service_db.effects() == [envelope.event_id for envelope, _ in messages]
    assert sum(runs) == 200 and len(runs) < 20, runs


async def test_a_failing_event_in_a_batch_costs_only_itself(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    messages = [_message() for _ in range(40)]
    poisoned = messages[17][0].event_id

    async def handler(event: Any, context: Any, uow: SqlUnitOfWork) -> None:
        await uow.session.execute(
            sa.insert(service_db.effect).values(event_id=context.envelope.event_id)
        )
        if context.envelope.event_id == poisoned:
            raise PermanentFailure("cannot apply")

    await _produce(kafka_bootstrap, single_partition_topic, [m for _, m in messages])
    async with Running(service_db, kafka_bootstrap, handler) as running:

        async def all_done() -> bool:
            return running.consumer.applied == 39 and running.consumer.dead_lettered == 1

        await wait_until(all_done)
    expected = [envelope.event_id for envelope, _ in messages if envelope.event_id != poisoned]
    assert await service_db.effects() == expected
    dead = await read_topic(kafka_bootstrap, dead_letter_topic(single_partition_topic))
    assert [dict(r.headers)["ce_id"] for r in dead] == [poisoned.encode()]


async def test_an_event_twice_in_one_batch_is_applied_once(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    (a, a_message), (b, b_message), (c, c_message) = (_message() for _ in range(3))
    await _produce(
        kafka_bootstrap, single_partition_topic, [a_message, b_message, a_message, c_message]
    )
    async with Running(service_db, kafka_bootstrap, _recording_handler(service_db)) as running:

        async def all_seen() -> bool:
            return running.consumer.applied + running.consumer.duplicates == 4

        await wait_until(all_seen)
    assert await service_db.effects() == [a.event_id, b.event_id, c.event_id]
    assert running.consumer.duplicates == 1


async def _livez(port: int) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(f"http://127.0.0.1:{port}/livez")
    return response.status_code, response.json()


async def test_liveness_reports_a_consumer_stuck_in_a_handler_and_its_recovery(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    released = asyncio.Event()
    messages = [_message() for _ in range(5)]
    await _produce(kafka_bootstrap, single_partition_topic, [m for _, m in messages])
    handler = _recording_handler(service_db, released.wait)
    async with Running(service_db, kafka_bootstrap, handler, stall_after_seconds=1.0) as running:
        port = free_port()
        server = await serve_health("127.0.0.1", port, running.consumer.health)
        try:
            seen: dict = {}

            async def reported_stuck() -> bool:
                status, body = await _livez(port)
                seen.update(body)
                return status == 503 and body["reason"].startswith("no poll for")

            await wait_until(reported_stuck)
            assert seen["status"] == "stalled"
            assert seen["lag"] == 5
            assert [p["lag"] for p in seen["partitions"]] == [5]

            released.set()

            async def live_and_caught_up() -> bool:
                status, body = await _livez(port)
                seen.update(body)
                return status == 200 and body["lag"] == 0

            await wait_until(live_and_caught_up)
            assert seen["applied"] == 5
            async with httpx.AsyncClient(timeout=2) as client:
                metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'clinic_consumer_applied{{consumer="{running.group}"}} 5.0' in metrics
            assert "clinic_consumer_lag{" in metrics
        finally:
            released.set()  # a failed check must not leave the consumer parked in teardown
            server.close()
            await server.wait_closed()
    assert len(await service_db.effects()) == 5


async def test_liveness_reports_a_partition_that_polls_but_never_gets_past_an_event(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    async def database_away() -> None:
        raise ConnectionError("database away")

    _, message = _message()
    await _produce(kafka_bootstrap, single_partition_topic, [message])
    handler = _recording_handler(service_db, database_away)
    async with Running(
        service_db, kafka_bootstrap, handler, max_transient_attempts=1, stall_after_seconds=1.0
    ) as running:
        health: dict = {}

        async def stalled() -> bool:
            health.update(running.consumer.health().as_json())
            return health["status"] == "stalled"

        await wait_until(stalled)
    assert health["reason"].startswith("lag 1 and no progress")
    assert health["last_poll_age_seconds"] < 1.0  # the loop itself still polls
    assert await service_db.effects() == []


async def test_an_idle_consumer_stays_live(
    service_db: ServiceDb, kafka_bootstrap: str, single_partition_topic: str
):
    envelope, message = _message()
    await _produce(kafka_bootstrap, single_partition_topic, [message])
    async with Running(
        service_db, kafka_bootstrap, _recording_handler(service_db), stall_after_seconds=0.5
    ) as running:

        async def applied() -> bool:
            return running.consumer.applied == 1

        await wait_until(applied)
        started = asyncio.get_running_loop().time()

        async def idle_past_the_threshold() -> bool:
            return asyncio.get_running_loop().time() - started > 1.0

        await wait_until(idle_past_the_threshold)
        health = running.consumer.health()
    assert health.status == "ok", health
    assert health.lag == 0
    assert await service_db.effects() == [envelope.event_id]

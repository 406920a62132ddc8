"""A throwaway service database (infra tables plus an `effect` table) on each back end,
and private Kafka topics per test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared.clock import SystemClock
from clinic_shared.db import create_engine, session_factory
from clinic_shared.kafka import ensure_topics, make_consumer
from clinic_shared.tables import OUTBOX_LANES, InfraTables, infra_tables
from clinic_shared.uow import UnitOfWorkFactory


@dataclass
class ServiceDb:
    url: str
    engine: AsyncEngine
    tables: InfraTables
    effect: sa.Table
    uow_factory: UnitOfWorkFactory
    topic: str

    async def effects(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(self.effect.c.event_id).order_by(self.effect.c.id))
            return [r[0] for r in rows]


def _metadata() -> tuple[sa.MetaData, InfraTables, sa.Table]:
    metadata = sa.MetaData()
    tables = infra_tables(metadata)
    effect = sa.Table(
        "effect",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
    )
    return metadata, tables, effect


async def make_service_db(url: str, topic: str) -> ServiceDb:
    metadata, tables, effect = _metadata()
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            sa.insert(tables.outbox_lane), [{"lane": n} for n in range(OUTBOX_LANES)]
        )
    factory = UnitOfWorkFactory(
        sessions=session_factory(engine),
        tables=tables,
        producer="booking",
        clock=SystemClock(),
        dialect=engine.dialect.name,
        topic=topic,
    )
    return ServiceDb(url, engine, tables, effect, factory, topic)


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"test.{uuid.uuid4().hex[:12]}.events"
    await ensure_topics(kafka_bootstrap, [name], partitions=3)
    return name


@pytest.fixture
async def service_db(database_url: str, topic: str) -> AsyncIterator[ServiceDb]:
    db = await make_service_db(database_url, topic)
    yield db
    await db.engine.dispose()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Wait for a condition with a deadline (never a bare sleep standing in for a race)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def now() -> datetime:
    return datetime.now(UTC)


async def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list:
    """Every record now in `topic`, read from the beginning up to the current end offsets."""
    consumer = make_consumer(bootstrap, f"reader-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not partitions:
            if time.monotonic() > deadline:
                raise AssertionError(f"no metadata for {topic}")
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()

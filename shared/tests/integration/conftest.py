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
from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared.clock import SystemClock
from clinic_shared.db import create_engine, session_factory
from clinic_shared.kafka import ensure_topics
from clinic_shared.tables import InfraTables, infra_tables
from clinic_shared.testing import create_schema
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
    await create_schema(engine, metadata, tables)
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


@pytest.fixture
async def single_partition_topic(service_db: ServiceDb, kafka_bootstrap: str) -> str:
    name = f"test.{uuid.uuid4().hex[:12]}.one"
    await ensure_topics(kafka_bootstrap, [name], partitions=1)
    service_db.topic = name
    return name

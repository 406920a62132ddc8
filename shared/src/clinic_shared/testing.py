"""Helpers for the services' tests: migrated databases, in-process API clients, tokens,
outbox inspection. Imported only by tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared import migrations
from clinic_shared.auth import Role, issue_token
from clinic_shared.clock import FakeClock, SystemClock
from clinic_shared.consumer import EventContext, Handler
from clinic_shared.contracts.registry import parse_payload, topic_for
from clinic_shared.envelope import Envelope
from clinic_shared.kafka import make_consumer
from clinic_shared.tables import OUTBOX_LANES, InfraTables
from clinic_shared.uow import UnitOfWorkFactory

__all__ = [
    "FakeClock",
    "SystemClock",
    "api_client",
    "apply_once",
    "bearer",
    "count_rows",
    "create_schema",
    "migrate",
    "read_topic",
]


async def migrate(service_dir: Path, database_url: str, revision: str = "head") -> None:
    """Alembic runs its own event loop, so it runs in a worker thread."""
    await asyncio.to_thread(migrations.upgrade, service_dir, database_url, revision)


def bearer(secret: str, role: Role | str, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret, role, subject)}"}


def api_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def count_rows(engine: AsyncEngine, table: str | sa.Table) -> int:
    target = sa.table(table) if isinstance(table, str) else table
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(target)
        return int((await conn.execute(query)).scalar_one())


async def create_schema(engine: AsyncEngine, metadata: sa.MetaData, tables: InfraTables) -> None:
    """Create `metadata`'s tables without migrations and open the outbox lanes."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        lanes = [{"lane": n} for n in range(OUTBOX_LANES)]
        await conn.execute(sa.insert(tables.outbox_lane), lanes)


async def apply_once(
    uow_factory: UnitOfWorkFactory,
    envelope: Envelope,
    handlers: Mapping[str, Handler],
    consumer: str,
) -> bool:
    """What the consumer does per message: claim the inbox, run the handler, commit.
    False when the inbox already had the event (nothing applied)."""
    handler = handlers[envelope.event_type]
    event = parse_payload(envelope.event_type, envelope.payload)
    context = EventContext(envelope, topic_for(envelope.producer), partition=0, offset=0)
    async with uow_factory() as uow:
        if not await uow.claim_inbox(consumer, envelope.event_id, envelope.event_type):
            return False
        await handler(event, context, uow)
        await uow.commit()
    return True


async def outbox_rows(engine: AsyncEngine, tables: InfraTables) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(tables.outbox).order_by(tables.outbox.c.id))
        return [dict(r) for r in rows.mappings()]


async def read_topic(
    bootstrap: str, topic: str, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
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
            await asyncio.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


class SmtpRecorder:
    """A real SMTP server (aiosmtpd, in its own thread) on a free localhost port that accepts
    and records every message, or answers RCPT or DATA with a fixed refusal. For tests only:
    aiosmtpd is a development dependency, imported when a server starts."""

    def __init__(self, rcpt_reply: str | None = None, data_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.messages: list[bytes] = []
        self.recipients: list[list[str]] = []
        self._controller: Any = None
        self.port = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpRecorder:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

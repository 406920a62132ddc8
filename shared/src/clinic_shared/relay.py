"""Outbox relay: publishes committed outbox rows to Kafka, in order per key, once in effect.

Rows are spread over lanes by key. In each pass the relay opens one transaction, claims every
lane row with unsent rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so another relay takes the
lanes this one does not hold instead of waiting; on SQLite the immediate transaction serialises
relays), publishes those lanes' oldest unsent rows in id order, waits for every acknowledgement
(`acks="all"`), marks them sent and commits. A relay that dies after publishing and before
committing publishes those rows again: consumers drop the duplicates through their inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared import faults
from clinic_shared.clock import Clock
from clinic_shared.db import raw_postgres_dsn
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.logging import get_logger
from clinic_shared.tables import InfraTables
from clinic_shared.uow import outbox_channel

log = get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        tables: InfraTables,
        producer: AIOKafkaProducer,
        producer_name: str,
        clock: Clock,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        listening_poll_interval: float = 5.0,
    ) -> None:
        self._engine = engine
        self._tables = tables
        self._producer = producer
        self._producer_name = producer_name
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._listening_poll_interval = max(poll_interval, listening_poll_interval)
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        listener = None
        try:
            while not stop.is_set():
                if listener is None or listener.is_closed():
                    # Again after a database restart closed it: NOTIFY, not the poll, is the
                    # normal wake-up.
                    listener = await self._listen()
                # Cleared before draining, so a NOTIFY arriving during the pass is not lost.
                self._wake.clear()
                try:
                    while await self.drain_once():
                        if stop.is_set():
                            return
                except Exception as exc:  # broker or database away: keep the rows, try again
                    log.warning("outbox relay pass failed", error=type(exc).__name__)
                    await _wait_any(stop, None, 1.0)
                    continue
                # Listening, the poll only catches rows no commit announced (a relay that died
                # holding a lane), so it can be rare: an idle relay costs next to nothing.
                idle = self._poll_interval if listener is None else self._listening_poll_interval
                await _wait_any(stop, self._wake, idle)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self) -> Any:
        """On PostgreSQL, wake on NOTIFY from committing transactions instead of polling."""
        if self._engine.dialect.name != "postgresql":
            return None
        import asyncpg

        url = self._engine.url.render_as_string(hide_password=False)
        try:
            conn = await asyncpg.connect(raw_postgres_dsn(url))
            await conn.add_listener(
                outbox_channel(self._producer_name), lambda *_args: self._wake.set()
            )
            # A lost connection wakes the loop too, which then listens again.
            conn.add_termination_listener(lambda *_args: self._wake.set())
            return conn
        except Exception as exc:
            log.warning("outbox relay cannot LISTEN, polling instead", error=type(exc).__name__)
            return None

    async def drain_once(self) -> int:
        """One pass: every lane with unsent rows that no other relay holds, in one transaction;
        the number of rows published."""
        total = await self.publish_pending()
        self.published += total
        return total

    async def publish_pending(self) -> int:
        outbox, lanes = self._tables.outbox, self._tables.outbox_lane
        async with self._engine.connect() as conn, conn.begin():
            pending = sa.select(outbox.c.lane).where(outbox.c.sent_at.is_(None)).distinct()
            claimed = [
                row[0]
                for row in await conn.execute(
                    sa.select(lanes.c.lane)
                    .where(lanes.c.lane.in_(pending))
                    .order_by(lanes.c.lane)
                    .with_for_update(skip_locked=True)  # lanes other relays hold are skipped
                )
            ]
            if not claimed:
                return 0
            rows = (
                (
                    await conn.execute(
                        sa.select(outbox)
                        .where(outbox.c.lane.in_(claimed), outbox.c.sent_at.is_(None))
                        .order_by(outbox.c.id)
                        .limit(self._batch_size)
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                return 0
            await faults.reach(faults.RELAY_BEFORE_PUBLISH)
            await self._publish(rows)
            await faults.reach(faults.RELAY_AFTER_PUBLISH)
            await conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_([r["id"] for r in rows]))
                .values(sent_at=self._clock.now())
            )
        return len(rows)

    async def _publish(self, rows: Any) -> None:
        # Sent in id order without awaiting each: the idempotent producer keeps their order
        # per partition; then every acknowledgement is awaited before anything is marked sent.
        futures = []
        for row in rows:
            key, value, headers = to_kafka(
                Envelope(
                    event_id=row["event_id"],
                    event_type=row["event_type"],
                    producer=self._producer_name,
                    occurred_at=row["occurred_at"],
                    key=row["message_key"],
                    payload=row["payload"],
                    correlation_id=row["correlation_id"],
                    causation_id=row["causation_id"],
                )
            )
            futures.append(
                await self._producer.send(row["topic"], value=value, key=key, headers=headers)
            )
        await asyncio.gather(*futures)


async def _wait_any(stop: asyncio.Event, other: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    _done, pending = await asyncio.wait(
        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()

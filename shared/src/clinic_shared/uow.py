"""Unit of work: one transaction that holds the state change, its outbox rows and its inbox row.

A handler changes state, calls `publish()` for each integration event the change implies and
`commit()`s once; the events are rows in the same transaction, so there is never an event
without its change nor a change without its event. On PostgreSQL the commit also wakes the
relays (NOTIFY is delivered only when the transaction commits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clinic_shared.clock import Clock
from clinic_shared.contracts.registry import topic_for
from clinic_shared.envelope import Envelope, IntegrationEvent
from clinic_shared.logging import causation_id_var, correlation_id_var
from clinic_shared.policy import Policy, default_policy
from clinic_shared.tables import InfraTables, lane_for

_NOTIFY = sa.text("SELECT pg_notify(:channel, '')")


def outbox_channel(producer: str) -> str:
    return f"clinic_outbox_{producer}"


@dataclass
class UnitOfWorkFactory:
    """Builds units of work for one service; handlers receive the unit, never the factory."""

    sessions: async_sessionmaker[AsyncSession]
    tables: InfraTables
    producer: str
    clock: Clock
    dialect: str
    topic: str | None = None
    """Where this service's events go; the producer's topic unless a test names its own."""
    policy: Policy = field(default_factory=default_policy)
    """The clinic's rules, for handlers that apply them."""

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self)


class SqlUnitOfWork:
    def __init__(self, factory: UnitOfWorkFactory) -> None:
        self._factory = factory
        self.tables = factory.tables
        self.clock = factory.clock
        self.policy = factory.policy
        self._published = 0
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._factory.sessions()
        self._published = 0
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.session.rollback()
        finally:
            await self.session.close()
            self._session = None

    @property
    def is_postgres(self) -> bool:
        return self._factory.dialect == "postgresql"

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    async def publish(self, event: IntegrationEvent, *, key: str | None = None) -> Envelope:
        """Write the event to the outbox in this transaction."""
        envelope = self._wrap(event)
        await self.session.execute(sa.insert(self.tables.outbox).values(self._row(envelope, key)))
        self._published += 1
        return envelope

    async def publish_all(self, events: Sequence[IntegrationEvent]) -> list[Envelope]:
        """Write the events to the outbox in this transaction, in this order, in one statement."""
        envelopes = [self._wrap(event) for event in events]
        if envelopes:
            await self.session.execute(
                sa.insert(self.tables.outbox), [self._row(envelope) for envelope in envelopes]
            )
            self._published += len(envelopes)
        return envelopes

    def _wrap(self, event: IntegrationEvent) -> Envelope:
        return Envelope.wrap(
            event,
            occurred_at=self.clock.now(),
            correlation_id=correlation_id_var.get(),
            causation_id=causation_id_var.get(),
        )

    def _row(self, envelope: Envelope, key: str | None = None) -> dict[str, Any]:
        message_key = key or envelope.key
        return {
            "event_id": envelope.event_id,
            "event_type": envelope.event_type,
            "topic": self._factory.topic or topic_for(envelope.producer),
            "message_key": message_key,
            "lane": lane_for(message_key),
            "payload": envelope.payload,
            "occurred_at": envelope.occurred_at,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
        }

    async def claim_inbox(self, consumer: str, event_id: str, event_type: str) -> bool:
        """Record that `consumer` applies `event_id` in this transaction.

        False when it was applied before: the caller skips the event.
        """
        stmt = (
            self._insert(self.tables.inbox)
            .values(
                consumer=consumer,
                event_id=event_id,
                event_type=event_type,
                received_at=self.clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def claim_inbox_many(self, consumer: str, events: Sequence[Envelope]) -> set[str]:
        """Record, in one statement, that `consumer` applies `events` in this transaction.

        Returns the ids of those not applied before: the caller applies only these.
        """
        if not events:
            return set()
        received_at = self.clock.now()
        rows = {
            envelope.event_id: {
                "consumer": consumer,
                "event_id": envelope.event_id,
                "event_type": envelope.event_type,
                "received_at": received_at,
            }
            for envelope in events
        }
        stmt = (
            self._insert(self.tables.inbox)
            .values(list(rows.values()))
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(self.tables.inbox.c.event_id)
        )
        return {str(event_id) for event_id in (await self.session.execute(stmt)).scalars()}

    async def commit(self) -> None:
        if self._published and self.is_postgres:
            await self.session.execute(_NOTIFY, {"channel": outbox_channel(self._factory.producer)})
        await self.session.commit()
        self._published = 0

    async def rollback(self) -> None:
        await self.session.rollback()
        self._published = 0

"""Event consumer: applies each event once in effect, whatever Kafka redelivers.

Per message: read the envelope (CloudEvents headers), validate the payload against its
contract, then in one unit of work insert `(consumer, event_id)` into the inbox, run the
handler and commit. Only after the database commit is the Kafka offset committed, explicitly,
for partitions this consumer still owns. A duplicate finds its inbox row and is skipped.

- Transient errors (database or network away) retry with bounded, capped backoff on the same
  partition; when the attempts run out the partition is rewound to the message and retried on
  a later poll, so nothing is skipped and order per key holds.
- Malformed messages and permanent failures go to `<topic>.DLT` with their origin topic,
  partition, offset and error kind in headers (never payload text), and the partition moves on.

A partition's batch is first applied in one transaction (one inbox statement for the batch, each
new event's handler, one commit): a commit per event would cap a backlog's drain at the
database's commit rate. If anything in the batch fails, the transaction is rolled back and the
batch is applied one event at a time with the rules above, so a bad event costs only its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError

from clinic_shared import faults
from clinic_shared.contracts.registry import parse_payload
from clinic_shared.envelope import Envelope, IntegrationEvent, MalformedMessage, from_kafka
from clinic_shared.errors import is_transient
from clinic_shared.health import ConsumerHealth, ConsumerProgress
from clinic_shared.kafka import dead_letter_topic
from clinic_shared.logging import causation_id_var, correlation_id_var, get_logger, scrub_text
from clinic_shared.uow import SqlUnitOfWork

log = get_logger(__name__)


@dataclass(frozen=True)
class EventContext:
    envelope: Envelope
    topic: str
    partition: int
    offset: int


Handler = Callable[[Any, EventContext, SqlUnitOfWork], Awaitable[None]]
ManyHandler = Callable[[list[tuple[Any, EventContext]], SqlUnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class Batchable:
    """A handler that can also apply a run of consecutive events of its type at once (one
    query for all of them instead of one each), for a backlog's batches. `many` must have the
    same effect as `one` applied to each event in turn, and must publish no events: the batch
    shares one causation id."""

    one: Handler
    many: ManyHandler

    async def __call__(self, event: Any, context: EventContext, uow: SqlUnitOfWork) -> None:
        await self.one(event, context, uow)


class PermanentFailure(Exception):
    """A handler's way to say: this event can never be applied; dead-letter it."""


class UnitOfWorkFactoryLike(Protocol):
    def __call__(self) -> SqlUnitOfWork: ...


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        consumer: AIOKafkaConsumer,
        dlt_producer: AIOKafkaProducer,
        handlers: Mapping[str, Handler],
        uow_factory: UnitOfWorkFactoryLike,
        max_transient_attempts: int = 8,
        retry_base_seconds: float = 0.1,
        retry_max_seconds: float = 5.0,
        poll_timeout_ms: int = 500,
        max_records: int = 500,
        stall_after_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self._consumer = consumer
        self._dlt = dlt_producer
        self._handlers = dict(handlers)
        self._uow_factory = uow_factory
        self._max_attempts = max_transient_attempts
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self._processed: dict[TopicPartition, int] = {}
        self.progress = ConsumerProgress(name, stall_after_seconds=stall_after_seconds)
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0

    def health(self) -> ConsumerHealth:
        return self.progress.snapshot(
            self._consumer.assignment(),
            self._consumer.highwater,
            (self.applied, self.duplicates, self.dead_lettered),
        )

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _CommitOnRevoke(self)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=self._poll_timeout_ms, max_records=self._max_records
            )
            self.progress.polled()
            for tp, records in batch.items():
                self.progress.fetched(tp, records[0].offset)
            for tp, records in batch.items():
                await self._process_partition(tp, records, stop)
                await self.commit_processed([tp])

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]], stop: asyncio.Event
    ) -> None:
        if len(records) > 1 and not stop.is_set() and await self._apply_batch(tp, records):
            return
        for record in records:
            if tp not in self._consumer.assignment() or stop.is_set():
                return  # revoked mid-batch: the new owner redelivers, the inbox deduplicates
            done = await self.process(record)
            if not done:
                # Transient failure outlasted its retries: read this message again later.
                self._consumer.seek(tp, record.offset)
                self.progress.rewound(tp, record.offset)
                return
            self._processed[tp] = record.offset + 1
            self.progress.applied(tp, record.offset)

    async def _apply_batch(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> bool:
        """Apply well-formed records in one transaction. False, with nothing changed, when any
        record is malformed or any handler fails: the caller then goes one by one."""
        wanted: list[tuple[ConsumerRecord[Any, Any], Envelope, IntegrationEvent, Handler]] = []
        try:
            for record in records:
                envelope = from_kafka(record.key, record.value, record.headers)
                handler = self._handlers.get(envelope.event_type)
                if handler is not None:
                    event = parse_payload(envelope.event_type, envelope.payload)
                    wanted.append((record, envelope, event, handler))
        except MalformedMessage:
            return False
        applied = 0
        try:
            async with self._uow_factory() as uow:
                fresh = await uow.claim_inbox_many(self.name, [item[1] for item in wanted])
                # Consecutive events of one Batchable handler, applied together.
                run: tuple[Batchable, list[tuple[Any, EventContext]]] | None = None
                for record, envelope, event, handler in wanted:
                    if envelope.event_id not in fresh:
                        continue
                    fresh.discard(envelope.event_id)  # the same event twice in one batch
                    context = EventContext(envelope, record.topic, record.partition, record.offset)
                    applied += 1
                    if run is not None and handler is not run[0]:
                        await self._handle_run(*run, uow)
                        run = None
                    if isinstance(handler, Batchable):
                        run = run or (handler, [])
                        run[1].append((event, context))
                        continue
                    with _traced(envelope):
                        await self._handle(event, handler, context, uow)
                if run is not None:
                    await self._handle_run(*run, uow)
                await uow.commit()
        except Exception as exc:
            log.info(
                "batch rolled back; applying its events one by one",
                consumer=self.name,
                records=len(records),
                error=type(exc).__name__,
            )
            return False
        self.applied += applied
        self.duplicates += len(wanted) - applied
        self._processed[tp] = records[-1].offset + 1
        self.progress.applied(tp, records[-1].offset)
        return True

    async def _handle_run(
        self, handler: Batchable, run: list[tuple[Any, EventContext]], uow: SqlUnitOfWork
    ) -> None:
        for _event in run:
            await self._before_handling()
        with _traced(run[0][1].envelope):
            await handler.many(run, uow)

    async def _before_handling(self) -> None:
        await faults.reach(faults.CONSUMER_BEFORE_APPLY)
        delay = faults.handler_delay()
        if delay:
            await asyncio.sleep(delay)

    async def _handle(
        self,
        event: IntegrationEvent,
        handler: Handler,
        context: EventContext,
        uow: SqlUnitOfWork,
    ) -> None:
        await self._before_handling()
        await handler(event, context, uow)

    async def commit_processed(self, partitions: list[TopicPartition] | None = None) -> None:
        owned = self._consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._processed.items()
            if tp in owned and (partitions is None or tp in partitions)
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError:
            log.info("offset commit lost to a rebalance", consumer=self.name)
        for tp in offsets:
            self._processed.pop(tp, None)

    async def process(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Apply one record. False when a transient error outlasted the bounded retries."""
        try:
            envelope = from_kafka(record.key, record.value, record.headers)
            handler = self._handlers.get(envelope.event_type)
            if handler is None:
                return True  # not an event this consumer cares about
            event = parse_payload(envelope.event_type, envelope.payload)
        except MalformedMessage as exc:
            await self._dead_letter(record, "malformed", str(exc))
            return True
        return await self._apply_with_retries(record, envelope, event, handler)

    async def _apply_with_retries(
        self,
        record: ConsumerRecord[Any, Any],
        envelope: Envelope,
        event: IntegrationEvent,
        handler: Handler,
    ) -> bool:
        context = EventContext(envelope, record.topic, record.partition, record.offset)
        with _traced(envelope):
            for attempt in range(1, self._max_attempts + 1):
                try:
                    await self._apply_once(envelope, event, handler, context)
                    return True
                except Exception as exc:
                    if not is_transient(exc):
                        await self._dead_letter(record, "handler_failed", _describe(exc))
                        return True
                    delay = min(self._retry_max, self._retry_base * 2 ** (attempt - 1))
                    log.warning(
                        "transient failure applying event",
                        consumer=self.name,
                        event_type=envelope.event_type,
                        attempt=attempt,
                        error=type(exc).__name__,
                    )
                    await asyncio.sleep(delay)
        return False

    async def _apply_once(
        self,
        envelope: Envelope,
        event: IntegrationEvent,
        handler: Handler,
        context: EventContext,
    ) -> None:
        async with self._uow_factory() as uow:
            if not await uow.claim_inbox(self.name, envelope.event_id, envelope.event_type):
                self.duplicates += 1
                return
            await self._handle(event, handler, context, uow)
            await uow.commit()
            self.applied += 1

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], kind: str, description: str
    ) -> None:
        headers = [
            *(record.headers or ()),
            ("dlt.origin.topic", record.topic.encode()),
            ("dlt.origin.partition", str(record.partition).encode()),
            ("dlt.origin.offset", str(record.offset).encode()),
            ("dlt.consumer", self.name.encode()),
            ("dlt.error.kind", kind.encode()),
            ("dlt.error", scrub_text(description)[:500].encode()),
        ]
        await self._dlt.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        self.dead_lettered += 1
        log.error(
            "event dead-lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_kind=kind,
        )


@contextmanager
def _traced(envelope: Envelope) -> Iterator[None]:
    """The event's correlation and causation ids for the logs and events of its handling."""
    correlation_token = correlation_id_var.set(envelope.correlation_id)
    causation_token = causation_id_var.set(envelope.event_id)
    try:
        yield
    finally:
        correlation_id_var.reset(correlation_token)
        causation_id_var.reset(causation_token)


def _describe(exc: BaseException) -> str:
    # The exception's kind and, for our own failures, its message; driver messages can quote
    # row values, so they are reduced to their kind.
    if isinstance(exc, PermanentFailure | MalformedMessage):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class _CommitOnRevoke(ConsumerRebalanceListener):
    def __init__(self, owner: EventConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner.commit_processed(list(revoked))
        self._owner.progress.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None

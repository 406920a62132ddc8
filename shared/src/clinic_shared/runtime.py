"""Running a service's long-lived workers (outbox relay, event consumer) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared.clock import Clock, clock_from_environment
from clinic_shared.consumer import EventConsumer, Handler
from clinic_shared.contracts.registry import topic_for
from clinic_shared.db import create_engine, session_factory
from clinic_shared.health import serve_health
from clinic_shared.kafka import ensure_topics, make_consumer, make_producer
from clinic_shared.logging import get_logger
from clinic_shared.policy import Policy, load_policy
from clinic_shared.relay import OutboxRelay
from clinic_shared.settings import ServiceSettings
from clinic_shared.tables import InfraTables
from clinic_shared.uow import UnitOfWorkFactory

log = get_logger(__name__)


@dataclass
class Infrastructure:
    """What a service's bootstrap builds once per process: engine, units of work, clock."""

    settings: ServiceSettings
    engine: AsyncEngine
    tables: InfraTables
    clock: Clock
    uow_factory: UnitOfWorkFactory
    policy: Policy

    async def dispose(self) -> None:
        await self.engine.dispose()


def build_infrastructure(
    settings: ServiceSettings, tables: InfraTables, clock: Clock | None = None
) -> Infrastructure:
    policy = load_policy(settings.common.policy_file)  # a bad policy file stops start-up here
    engine = create_engine(settings.database_url)
    clock = clock or clock_from_environment()
    uow_factory = UnitOfWorkFactory(
        sessions=session_factory(engine),
        tables=tables,
        producer=settings.service_name,
        clock=clock,
        dialect=engine.dialect.name,
        topic=(
            settings.common.topic(topic_for(settings.service_name))
            if settings.common.topic_prefix
            else None
        ),
        policy=policy,
    )
    return Infrastructure(settings, engine, tables, clock, uow_factory, policy)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_relay(
    infra: Infrastructure,
    stop: asyncio.Event,
) -> None:
    settings = infra.settings
    bootstrap = settings.common.kafka_bootstrap_servers
    await ensure_topics(
        bootstrap,
        [settings.common.topic(topic_for(settings.service_name))],
        settings.common.topic_partitions,
    )
    # No linger: a relay pass queues all its rows before it waits, so lingering batches nothing.
    producer = make_producer(bootstrap, client_id=f"{settings.service_name}-relay", linger_ms=0)
    await producer.start()
    relay = OutboxRelay(
        engine=infra.engine,
        tables=infra.tables,
        producer=producer,
        producer_name=settings.service_name,
        clock=infra.clock,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_seconds,
    )
    log.info("outbox relay started")
    try:
        await relay.run(stop)
    finally:
        await producer.stop()
        log.info("outbox relay stopped", published=relay.published)


async def run_consumer(
    infra: Infrastructure,
    stop: asyncio.Event,
    *,
    group: str,
    topics: list[str],
    handlers: Mapping[str, Handler],
    on_started: Callable[[EventConsumer], Awaitable[None]] | None = None,
) -> None:
    settings = infra.settings
    bootstrap = settings.common.kafka_bootstrap_servers
    topics = [settings.common.topic(topic) for topic in topics]
    await ensure_topics(bootstrap, topics, settings.common.topic_partitions)
    kafka_consumer = make_consumer(
        bootstrap, group, max_poll_interval_ms=settings.consumer_max_poll_interval_ms
    )
    dlt_producer = make_producer(bootstrap, client_id=f"{group}-dlt")
    consumer = EventConsumer(
        name=group,
        consumer=kafka_consumer,
        dlt_producer=dlt_producer,
        handlers=handlers,
        uow_factory=infra.uow_factory,
        max_transient_attempts=settings.consumer_max_transient_attempts,
        retry_base_seconds=settings.consumer_retry_base_seconds,
        retry_max_seconds=settings.consumer_retry_max_seconds,
        poll_timeout_ms=settings.consumer_poll_timeout_ms,
        stall_after_seconds=settings.consumer_stall_after_seconds,
    )
    kafka_consumer.subscribe(topics, listener=consumer.rebalance_listener())
    health = (
        await serve_health(
            settings.consumer_health_host, settings.consumer_health_port, consumer.health
        )
        if settings.consumer_health_port
        else None
    )
    await dlt_producer.start()
    await kafka_consumer.start()
    log.info("consumer started", group=group, topics=topics)
    try:
        if on_started is not None:
            await on_started(consumer)
        await consumer.run(stop)
    finally:
        if health is not None:
            health.close()
        await consumer.commit_processed()
        await kafka_consumer.stop()
        await dlt_producer.stop()
        log.info(
            "consumer stopped",
            applied=consumer.applied,
            duplicates=consumer.duplicates,
            dead_lettered=consumer.dead_lettered,
        )

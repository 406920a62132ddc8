"""The only place Kafka clients are built. aiokafka's defaults are unsafe for us:
`acks=1`, no idempotence, auto-commit of offsets before the work is done. Every producer here
is `acks="all"` with the idempotent producer, every consumer commits by hand."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

SAFE_PRODUCER_SETTINGS: dict[str, Any] = {"acks": "all", "enable_idempotence": True}
SAFE_CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "isolation_level": "read_committed",
}


def make_producer(bootstrap_servers: str, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    _refuse_unsafe(overrides, SAFE_PRODUCER_SETTINGS)
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        linger_ms=overrides.pop("linger_ms", 2),
        request_timeout_ms=overrides.pop("request_timeout_ms", 15000),
        **SAFE_PRODUCER_SETTINGS,
        **overrides,
    )


def make_consumer(
    bootstrap_servers: str, group_id: str, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    _refuse_unsafe(overrides, SAFE_CONSUMER_SETTINGS)
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id=overrides.pop("client_id", group_id),
        max_poll_interval_ms=overrides.pop("max_poll_interval_ms", 300_000),
        session_timeout_ms=overrides.pop("session_timeout_ms", 10_000),
        heartbeat_interval_ms=overrides.pop("heartbeat_interval_ms", 3_000),
        **SAFE_CONSUMER_SETTINGS,
        **overrides,
    )


def _refuse_unsafe(overrides: dict[str, Any], safe: dict[str, Any]) -> None:
    for name in safe:
        if name in overrides:
            raise ValueError(f"{name} is fixed to {safe[name]!r} for every client")


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.DLT"


async def ensure_topics(bootstrap_servers: str, topics: list[str], partitions: int = 3) -> None:
    """Create the topics that do not exist yet (their DLTs too); existing ones are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="clinic-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics for t in (topic, dead_letter_topic(topic))]
        missing = [
            NewTopic(name=t, num_partitions=partitions, replication_factor=1)
            for t in wanted
            if t not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()

"""The local launchers: Kafka (KRaft, Maven jars) and a throwaway PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from clinic_local.kafka import KafkaBroker, ensure_topics_async
from clinic_local.postgres import ExternalPostgres, PostgresCluster, to_raw_dsn


async def _produce(bootstrap: str, topic: str, value: bytes) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=b"chair-1")
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def _consume_one(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    return consumer


@pytest.mark.kafka
async def test_idempotent_produce_and_group_consume_commit(kafka_bootstrap: str) -> None:
    topic = f"infra-{uuid.uuid4().hex[:8]}"
    await ensure_topics_async(kafka_bootstrap, [topic], partitions=3)
    await ensure_topics_async(kafka_bootstrap, [topic], partitions=3)  # already exists: no-op

    partition, offset = await _produce(kafka_bootstrap, topic, b"booked")

    consumer = await _consume_one(kafka_bootstrap, topic, f"g-{topic}")
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert record.value == b"booked"
        assert (record.partition, record.offset) == (partition, offset)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, partition))
        assert committed == offset + 1
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_message_survives_broker_restart(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    await ensure_topics_async(bootstrap, [topic], partitions=1)
    await _produce(bootstrap, topic, b"before-restart")

    await kafka_broker.stop_async()
    assert not kafka_broker.is_running
    await kafka_broker.start_async()
    assert kafka_broker.bootstrap_servers == bootstrap  # same ports after a restart

    consumer = await _consume_one(bootstrap, topic, f"g-{topic}")
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert record.value == b"before-restart"
    finally:
        await consumer.stop()


@pytest.mark.postgres
async def test_database_has_btree_gist_exclusion_constraint(fresh_pg_database: str) -> None:
    assert fresh_pg_database.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(to_raw_dsn(fresh_pg_database))
    try:
        ext = await conn.fetchval("SELECT extname FROM pg_extension WHERE extname='btree_gist'")
        assert ext == "btree_gist"
        await conn.execute(
            """
            CREATE TABLE chair_booking (
                id bigserial PRIMARY KEY,
                chair_id integer NOT NULL,
                during tstzrange NOT NULL,
                EXCLUDE USING gist (chair_id WITH =, during WITH &&)
            )
            """
        )
        start = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
        insert = "INSERT INTO chair_booking (chair_id, during) VALUES ($1, tstzrange($2, $3))"
        await conn.execute(insert, 1, start, start + timedelta(hours=2))
        await conn.execute(insert, 2, start, start + timedelta(hours=2))  # other chair
        await conn.execute(insert, 1, start + timedelta(hours=2), start + timedelta(hours=3))
        with pytest.raises(asyncpg.exceptions.ExclusionViolationError):
            await conn.execute(insert, 1, start + timedelta(hours=1), start + timedelta(hours=4))
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_stop_kill_and_start_keep_committed_data(
    postgres_cluster: PostgresCluster | ExternalPostgres,
) -> None:
    if not isinstance(postgres_cluster, PostgresCluster):
        pytest.fail("this test stops the server: unset CLINIC_TEST_POSTGRES_DSN", pytrace=False)
    name = f"t_{uuid.uuid4().hex[:12]}"
    await postgres_cluster.create_database_async(name, extensions=())
    raw = postgres_cluster.raw_dsn(name)
    conn = await asyncpg.connect(raw)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')")
    await conn.close()

    await asyncio.to_thread(postgres_cluster.stop)
    with pytest.raises(OSError):
        await asyncpg.connect(raw, timeout=5)
    await asyncio.to_thread(postgres_cluster.start)

    conn = await asyncpg.connect(raw)
    try:
        assert await conn.fetchval("SELECT v FROM kept") == "x"
        await conn.execute("INSERT INTO kept VALUES ('y')")
    finally:
        await conn.close()

    # a crash-like stop keeps acknowledged commits although the cluster runs async commit
    await asyncio.to_thread(postgres_cluster.kill)
    await asyncio.to_thread(postgres_cluster.start)
    conn = await asyncpg.connect(raw)
    try:
        assert await conn.fetch("SELECT v FROM kept ORDER BY v") == [("x",), ("y",)]
    finally:
        await conn.close()
    postgres_cluster.drop_database(name)

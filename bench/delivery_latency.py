"""Event delivery latency through the spine, beside a bare aiokafka relay on the same broker.

ours: a unit of work commits a state change and its outbox row on PostgreSQL; the relay (woken
by NOTIFY) publishes it; the inbox consumer applies it in its own transaction. Measured from
just before the commit to the end of the consumer's database commit.

bare: the same payload produced to topic A, read by a relay task that produces it to topic B,
read back: two hops through the same broker with the same safe client settings, no database.

Runs are alternated (ours, bare, ours, ...) so both see the same machine state. Prints p50 and
p99 of each and their ratio, and writes the figures to bench/results/delivery_latency.json.
The headline figures (`figures`) split the alternated runs into consecutive pairs of blocks
(5; 3 with --quick) and take the median of the blocks' ratios.

    uv run python bench/delivery_latency.py [--runs 200] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from _common import figure, latency_pairs, p50, p99, percentile, print_figures, write_results

from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import PostgresCluster
from clinic_shared.clock import SystemClock
from clinic_shared.consumer import EventConsumer
from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.db import create_engine, session_factory
from clinic_shared.kafka import ensure_topics, make_consumer, make_producer
from clinic_shared.relay import OutboxRelay
from clinic_shared.tables import infra_tables
from clinic_shared.testing import create_schema
from clinic_shared.uow import UnitOfWorkFactory


async def main(runs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka")
        broker.start()
        cluster = PostgresCluster()
        cluster.start()
        try:
            url = cluster.create_database("bench_delivery")
            return await measure(broker.bootstrap_servers, url, runs)
        finally:
            cluster.stop()
            cluster.cleanup()
            broker.stop()


async def measure(bootstrap: str, url: str, runs: int) -> tuple[list[float], list[float]]:
    suffix = uuid.uuid4().hex[:8]
    ours_topic, bare_a, bare_b = (f"bench.{n}.{suffix}" for n in ("ours", "a", "b"))
    await ensure_topics(bootstrap, [ours_topic, bare_a, bare_b], partitions=3)

    metadata = sa.MetaData()
    tables = infra_tables(metadata)
    engine = create_engine(url)
    await create_schema(engine, metadata, tables)
    uow_factory = UnitOfWorkFactory(
        session_factory(engine), tables, "booking", SystemClock(), "postgresql", topic=ours_topic
    )
    arrived: dict[str, asyncio.Future[float]] = {}

    async def handler(event, context, uow) -> None:
        await uow.session.execute(sa.select(1))

    class Timed(EventConsumer):
        async def _apply_once(self, envelope, event, handler_, context) -> None:
            await super()._apply_once(envelope, event, handler_, context)
            future = arrived.get(envelope.event_id)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    stop = asyncio.Event()
    relay_producer = make_producer(bootstrap, client_id="bench-relay")
    dlt = make_producer(bootstrap, client_id="bench-dlt")
    kafka_consumer = make_consumer(bootstrap, f"bench-{suffix}", fetch_max_wait_ms=10)
    consumer = Timed(
        name="bench",
        consumer=kafka_consumer,
        dlt_producer=dlt,
        handlers={PatientRegistered.event_type: handler},
        uow_factory=uow_factory,
        poll_timeout_ms=50,
    )
    kafka_consumer.subscribe([ours_topic], listener=consumer.rebalance_listener())
    relay = OutboxRelay(
        engine=create_engine(url),
        tables=tables,
        producer=relay_producer,
        producer_name="booking",
        clock=SystemClock(),
        poll_interval=1.0,
    )
    bare = BareRelay(bootstrap, bare_a, bare_b, suffix)
    for client in (relay_producer, dlt, kafka_consumer):
        await client.start()
    await bare.start()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]

    async def one_ours() -> float:
        async with uow_factory() as uow:
            envelope = await uow.publish(
                PatientRegistered(
                    patient_id=uuid.uuid4(), registered_at=datetime.now(UTC), registered_by="staff"
                )
            )
            future = asyncio.get_running_loop().create_future()
            arrived[envelope.event_id] = future
            started = time.perf_counter()
            await uow.commit()
        return await asyncio.wait_for(future, 30) - started

    try:
        await one_ours()  # warm-up: group join, metadata, connections
        await bare.one()
        ours, bare_runs = [], []
        for _ in range(runs):
            ours.append(await one_ours())
            bare_runs.append(await bare.one())
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await bare.stop()
        for client in (kafka_consumer, relay_producer, dlt):
            await client.stop()
        await engine.dispose()
    return ours, bare_runs


class BareRelay:
    """Producer -> topic A -> relay task -> topic B -> reader: the two-hop reference."""

    def __init__(self, bootstrap: str, topic_a: str, topic_b: str, suffix: str) -> None:
        self.producer = make_producer(bootstrap, client_id="bare-producer")
        self.hop_in = make_consumer(bootstrap, f"bare-hop-{suffix}", topic_a, fetch_max_wait_ms=10)
        self.hop_out = make_producer(bootstrap, client_id="bare-hop")
        self.reader = make_consumer(bootstrap, f"bare-read-{suffix}", topic_b, fetch_max_wait_ms=10)
        self.topic_a, self.topic_b = topic_a, topic_b
        self.waiting: dict[bytes, asyncio.Future[float]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for client in (self.producer, self.hop_in, self.hop_out, self.reader):
            await client.start()
        self.tasks = [asyncio.create_task(self._hop()), asyncio.create_task(self._read())]

    async def _hop(self) -> None:
        async for record in self.hop_in:
            await self.hop_out.send_and_wait(self.topic_b, value=record.value, key=record.key)
            await self.hop_in.commit()

    async def _read(self) -> None:
        async for record in self.reader:
            future = self.waiting.get(record.key)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())
            await self.reader.commit()

    async def one(self) -> float:
        key = uuid.uuid4().hex.encode()
        future = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        started = time.perf_counter()
        await self.producer.send_and_wait(self.topic_a, value=b'{"x": 1}', key=key)
        return await asyncio.wait_for(future, 30) - started

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in (self.producer, self.hop_in, self.hop_out, self.reader):
            await client.stop()


def report(ours: list[float], bare: list[float], pairs: int) -> dict:
    figures: dict = {
        "runs": len(ours),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "ours_p50_ms": round(statistics.median(ours) * 1000, 2),
        "ours_p99_ms": round(percentile(ours, 0.99) * 1000, 2),
        "bare_p50_ms": round(statistics.median(bare) * 1000, 2),
        "bare_p99_ms": round(percentile(bare, 0.99) * 1000, 2),
    }
    figures["p50_ratio"] = round(figures["ours_p50_ms"] / figures["bare_p50_ms"], 2)
    figures["p99_ratio"] = round(figures["ours_p99_ms"] / figures["bare_p99_ms"], 2)
    ours_ms, bare_ms = [s * 1000 for s in ours], [s * 1000 for s in bare]
    figures["figures"] = [
        figure(f"commit to applied, {name}", " ms", *latency_pairs(ours_ms, bare_ms, pairs, stat))
        for name, stat in (("p50", p50), ("p99", p99))
    ]
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="alternated runs of each (200; 60 with --quick)")
    parser.add_argument("--quick", action="store_true", help="60 runs, 3 pairs of blocks")
    args = parser.parse_args()
    runs = args.runs or (60 if args.quick else 200)
    result = {"quick": args.quick} | report(*asyncio.run(main(runs)), pairs=3 if args.quick else 5)
    path = write_results("delivery_latency", result)
    for name in ("ours", "bare"):
        median_ms, p99_ms = result[f"{name}_p50_ms"], result[f"{name}_p99_ms"]
        print(f"{name:>5}: p50 {median_ms:8.2f} ms   p99 {p99_ms:8.2f} ms")
    ratios = f"p50 {result['p50_ratio']:.2f}x   p99 {result['p99_ratio']:.2f}x"
    print(f"ratio: {ratios}   ({result['runs']} runs)")
    print_figures(result["figures"])
    print(f"written to {path}")

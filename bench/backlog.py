"""Draining a backlog of events that each change the database, beside bare single-row commits.

ours: 50,000 `booking.patient.registered.v1` events (the contract's committed sample, each with
a new patient id) are produced to `booking.events` before anything is timed. Then notify's real
consumer, `python -m notify consumer`, is started on a freshly migrated database and timed from
its start until its group (`notify`) has committed the end offset of every partition and the
effect rows are all there: one inbox row and one scheduled welcome message per event. The rate
is events per second.

bare: one asyncpg connection inserting one row per transaction (BEGIN, INSERT, COMMIT) into a
fresh table on the same PostgreSQL cluster, for as many rows as ours applied or until a time
cap, whichever comes first: rows per second.

Pairs alternate (ours, bare) on a fresh database each; the figure is the median of the pairs'
ratios. Then the replay: the `notify` group is rewound to the beginning of the topic and the
whole backlog is consumed again; every notify table's row count and checksum must be unchanged.

PostgreSQL runs with production durability (`fsync`, `synchronous_commit`, `full_page_writes`
on, set with ALTER SYSTEM after the cluster starts; the test clusters turn them off).

Prints the figures and writes bench/results/backlog.json.

    uv run python bench/backlog.py [--quick] [--events N] [--pairs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from _common import (
    ROOT,
    OtherLoad,
    check,
    describe_machine,
    figure,
    postgres_cpu,
    postmaster_pid,
    print_figures,
    process_cpu,
    warn_if_busy,
    write_results,
)
from _system import System, build_system, migrate
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import PostgresCluster, to_raw_dsn
from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.contracts.registry import topic_for
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.kafka import ensure_topics, make_consumer, make_producer

SECRET = "bench-secret-" + uuid.uuid4().hex
GROUP = "notify"  # the service's consumer group, which is also its inbox's consumer name
PARTITIONS = 3  # the services' topic_partitions
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SHOWN = (*DURABLE, "wal_sync_method", "shared_buffers", "max_wal_size", "checkpoint_timeout")
TARGET = 3.0
SAMPLE = ROOT / "shared/src/clinic_shared/contracts/samples/booking.patient.registered.v1/001.json"
BARE_SCHEMA = """
CREATE TABLE bare_event (
    id uuid PRIMARY KEY,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Sizes:
    events: int
    pairs: int
    bare_cap_seconds: float


FULL = Sizes(events=50_000, pairs=3, bare_cap_seconds=30.0)
QUICK = Sizes(events=3_000, pairs=3, bare_cap_seconds=5.0)


@dataclass
class Run:
    rows: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.rate, 1),
            "cpu_ms_per_row": {k: round(v * 1000 / self.rows, 3) for k, v in self.cpu.items()},
        }


# --------------------------------------------------------------------------- set-up


async def make_durable(cluster: PostgresCluster) -> dict[str, str]:
    """Production durability: ALTER SYSTEM (postgresql.auto.conf wins over the settings
    clinic_local appends to postgresql.conf), reloaded; these three need no restart."""
    conn = await asyncpg.connect(cluster.raw_dsn())
    try:
        for name, value in DURABLE.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        await conn.fetchval("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    deadline = time.monotonic() + 10
    while True:  # the reload reaches new sessions once the postmaster has read the files
        conn = await asyncpg.connect(cluster.raw_dsn())
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in SHOWN}
        finally:
            await conn.close()
        if all(shown[name] == value for name, value in DURABLE.items()):
            return shown
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not take the durable settings: {shown}")
        await asyncio.sleep(0.1)


async def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    """`count` patient-registered events, the committed sample with a new patient id each."""
    sample = json.loads(SAMPLE.read_text())
    producer = make_producer(bootstrap, client_id="bench-backlog")
    await producer.start()
    try:
        pending = []
        for _ in range(count):
            event = PatientRegistered.model_validate(sample | {"patient_id": str(uuid.uuid4())})
            envelope = Envelope.wrap(event, occurred_at=datetime.now(UTC))
            key, value, headers = to_kafka(envelope)
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class Offsets:
    """The backlog's end offsets and what the group has committed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-offsets")
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self._admin.start()
        # Reads end offsets only: it never subscribes, so its group never joins.
        probe = make_consumer(self._bootstrap, f"bench-offsets-{uuid.uuid4().hex[:8]}")
        await probe.start()
        try:
            self.ends = await probe.end_offsets(self.partitions)
        finally:
            await probe.stop()

    async def stop(self) -> None:
        await self._admin.close()

    async def caught_up(self) -> bool:
        try:
            committed = await self._admin.list_consumer_group_offsets(GROUP)
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            return False  # a new broker creates its offsets topic when a group first needs it
        return all(tp in committed and committed[tp].offset >= end for tp, end in self.ends.items())

    async def rewind(self) -> None:
        """Commit offset 0 for the (empty) group: its next member reads the backlog again."""
        rewinder = make_consumer(self._bootstrap, GROUP, client_id="bench-rewind")
        await rewinder.start()
        try:
            rewinder.assign(self.partitions)
            await rewinder.commit({tp: 0 for tp in self.partitions})
        finally:
            await rewinder.stop()


# --------------------------------------------------------------------------- ours


async def effect_rows(conn: asyncpg.Connection) -> tuple[int, int]:
    inbox = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", GROUP)
    welcomes = await conn.fetchval("SELECT count(*) FROM message WHERE kind = 'welcome'")
    return inbox, welcomes


async def drain(system: System, offsets: Offsets, url: str, expected: int, postmaster: int) -> Run:
    """Start notify's consumer; the clock stops when the group has committed the end offsets
    and `expected` inbox rows and welcome messages are there."""
    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        postgres_before = postgres_cpu(postmaster)
        started = time.perf_counter()
        process = system.start("notify", "consumer")
        pid = system.pids()["notify-consumer"]
        deadline = started + max(120.0, expected / 50)  # slower than 50 events/s: broken
        while True:
            await asyncio.sleep(0.1)
            system.check_alive()
            if await offsets.caught_up() and await effect_rows(conn) == (expected, expected):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"not drained in time: {await effect_rows(conn)}")
        elapsed = time.perf_counter() - started
        cpu = {
            "consumer": process_cpu(pid),  # all of it: the process started with the clock
            "postgres": postgres_cpu(postmaster) - postgres_before,
        }
        system.stop(process)
    finally:
        await conn.close()
    return Run(expected, elapsed, cpu)


async def checksums(url: str) -> dict[str, dict[str, Any]]:
    """Row count and a checksum of the contents of every table in the service's database."""
    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        found = {}
        for row in tables:
            name = row["table_name"]
            count, digest = await conn.fetchrow(
                f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' "
                f"ORDER BY md5(t::text)), '')) FROM \"{name}\" t"
            )
            found[name] = {"rows": count, "md5": digest}
        return found
    finally:
        await conn.close()


# --------------------------------------------------------------------------- bare


async def bare_inserts(url: str, count: int, cap_seconds: float, postmaster: int) -> Run:
    """One connection, one row per transaction, until `count` rows or `cap_seconds`."""
    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        await conn.execute(BARE_SCHEMA)
        payload = SAMPLE.read_text()
        insert = "INSERT INTO bare_event (id, payload) VALUES ($1, $2::jsonb)"
        postgres_before, client_before = postgres_cpu(postmaster), time.process_time()
        started = time.perf_counter()
        rows = 0
        while rows < count and time.perf_counter() - started < cap_seconds:
            async with conn.transaction():
                await conn.execute(insert, uuid.uuid4(), payload)
            rows += 1
        elapsed = time.perf_counter() - started
        cpu = {
            "client": time.process_time() - client_before,
            "postgres": postgres_cpu(postmaster) - postgres_before,
        }
    finally:
        await conn.close()
    return Run(rows, elapsed, cpu)


# --------------------------------------------------------------------------- main


async def measure(sizes: Sizes, tmp: Path) -> dict[str, Any]:
    log_dir = tmp / "logs"
    log_dir.mkdir()
    broker = KafkaBroker(tmp / "kafka")
    broker.start()
    cluster = PostgresCluster()
    cluster.start()
    try:
        settings = await make_durable(cluster)
        print(f"PostgreSQL settings: {settings}", flush=True)
        return await measure_on(sizes, cluster, broker.bootstrap_servers, tmp, log_dir) | {
            "postgresql_settings": settings
        }
    finally:
        cluster.stop()
        cluster.cleanup()
        broker.stop()


async def measure_on(
    sizes: Sizes, cluster: PostgresCluster, bootstrap: str, tmp: Path, log_dir: Path
) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topic = prefix + topic_for("booking")
    policy = tmp / "policy.yaml"
    policy.write_text("{}\n")
    system = await build_system(
        cluster,
        bootstrap,
        log_dir,
        name="backlog",
        services=("notify",),
        secret=SECRET,
        policy=policy,
        extra_env={"CLINIC_TOPIC_PREFIX": prefix},
    )
    url = system.database_urls["notify"]
    await ensure_topics(bootstrap, [topic], PARTITIONS)
    started = time.perf_counter()
    await produce_backlog(bootstrap, topic, sizes.events)
    print(
        f"produced {sizes.events:,} events to {topic} in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    offsets = Offsets(bootstrap, topic)
    await offsets.start()
    postmaster = postmaster_pid(cluster.data_dir)
    load = OtherLoad(postmaster)
    ours: list[Run] = []
    bare: list[Run] = []
    try:
        load.start()
        for pair in range(sizes.pairs):
            if pair:  # a fresh database, and the group back at the start of the backlog
                await cluster.create_database_async("bench_backlog_notify")
                await migrate("notify", system.env)
                await offsets.rewind()
            ours.append(await drain(system, offsets, url, sizes.events, postmaster))
            bare_url = await cluster.create_database_async("bench_backlog_bare")
            bare.append(
                await bare_inserts(bare_url, sizes.events, sizes.bare_cap_seconds, postmaster)
            )
            print(
                f"  pair {pair + 1}: ours {ours[-1].rate:8.1f} events/s "
                f"({ours[-1].seconds:.1f} s) | bare {bare[-1].rate:8.1f} rows/s "
                f"({bare[-1].rows:,} rows) | ratio {ours[-1].rate / bare[-1].rate:.2f}x",
                flush=True,
            )
        before = await checksums(url)
        await offsets.rewind()
        replay = await drain(system, offsets, url, sizes.events, postmaster)
        after = await checksums(url)
        other_cores = load.cores()
    finally:
        await offsets.stop()
        system.stop_all()
    unchanged = before == after
    print(
        f"  replay: {sizes.events:,} events again in {replay.seconds:.1f} s "
        f"({replay.rate:.1f}/s); database unchanged: {unchanged}",
        flush=True,
    )
    return {
        "events": sizes.events,
        "event_type": PatientRegistered.event_type,
        "consumer": "python -m notify consumer",
        "bare": "asyncpg, one connection: BEGIN; INSERT one row; COMMIT",
        "bare_cap_seconds": sizes.bare_cap_seconds,
        "pairs": [
            {"ours": o.summary(), "bare": b.summary(), "ratio": round(o.rate / b.rate, 3)}
            for o, b in zip(ours, bare, strict=True)
        ],
        "replay": {
            **replay.summary(),
            "unchanged": unchanged,
            "tables_before": before,
            "tables_after": after,
        },
        "other_processes_cores": other_cores,
        "figures": [
            figure(
                f"backlog of {sizes.events:,} events drained: events/s against bare commits/s",
                "/s",
                [run.rate for run in ours],
                [run.rate for run in bare],
                at_least=TARGET,
            ),
            check(
                "replaying the backlog changes nothing",
                "unchanged" if unchanged else "CHANGED",
                "unchanged",
                unchanged,
            ),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 events per backlog")
    parser.add_argument("--events", type=int, help="events per backlog (50,000)")
    parser.add_argument("--pairs", type=int, help="alternated pairs (3)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(
        events=args.events or sizes.events,
        pairs=args.pairs or sizes.pairs,
        bare_cap_seconds=sizes.bare_cap_seconds,
    )
    os.chdir(ROOT)  # `python -m notify` must find the service
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(sizes, Path(tmp)))
    result = {"quick": args.quick, "machine": describe_machine(), **result}
    path = write_results("backlog", result)
    print(f"backlog of {sizes.events:,} {PatientRegistered.event_type} events, notify consumer:")
    for pair in result["pairs"]:
        print(
            f"  ours {pair['ours']['per_second']}/s, CPU ms per event "
            f"{pair['ours']['cpu_ms_per_row']} | bare {pair['bare']['per_second']}/s, CPU ms "
            f"per row {pair['bare']['cpu_ms_per_row']}"
        )
    tables = result["replay"]["tables_after"]
    print("  after the replay: " + ", ".join(f"{k} {v['rows']}" for k, v in tables.items()))
    print_figures(result["figures"])
    warn_if_busy(result["other_processes_cores"])
    print(f"written to {path}")


if __name__ == "__main__":
    main()

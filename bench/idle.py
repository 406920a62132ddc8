"""The whole system with no traffic: its CPU beside as many bare idle Kafka consumers.

ours: the 15 long-lived processes of the four services, as `clinic run` runs them
(`clinic_local.runner.ROLES`: every service's api, consumer and relay; the dispatchers of
waitlist, billing and notify), each `python -m <service> <command>` set up as the e2e tests set
them up, on PostgreSQL (one database per service, migrated) and a local Kafka broker, with the
services' default settings.

bare: 15 processes of this script (`--bare-consumer`), each an aiokafka consumer built by
clinic_shared.kafka, subscribed in its own group to a topic of 3 partitions, polling with the
services' `getmany` timeout (500 ms) and batch size; nothing else.

Both sets are started and left to settle; then windows alternate (ours, bare, ours, ...) and
each window measures the CPU seconds (utime + stime from /proc) of its own set's processes.
The ratio is computed per pair of windows; the figure is the median of the pairs. Per-process
figures show where ours spends its idle CPU. PostgreSQL's CPU in ours' windows (only ours uses
it) and the broker's (both sets use it throughout) are reported beside, not in the ratio.

Prints the figures and writes bench/results/idle.json.

    uv run python bench/idle.py [--quick] [--window SECONDS] [--pairs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bare_relay import MAX_RECORDS, PARTITIONS, POLL_TIMEOUT_MS
from _common import (
    ROOT,
    OtherLoad,
    all_processes,
    command_line,
    describe_machine,
    figure,
    postgres_cpu,
    postmaster_pid,
    print_figures,
    process_cpu,
    warn_if_busy,
    write_results,
)
from _system import SERVICES, build_system

from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import PostgresCluster
from clinic_local.runner import ROLES
from clinic_shared.kafka import ensure_topics, make_consumer

SECRET = "bench-secret-" + uuid.uuid4().hex
TARGET = 2.0


@dataclass(frozen=True)
class Sizes:
    pairs: int
    window: float
    settle: float


FULL = Sizes(pairs=3, window=20.0, settle=20.0)
QUICK = Sizes(pairs=3, window=5.0, settle=8.0)


# --------------------------------------------------------------------------- bare consumers


async def bare_consumer(bootstrap: str, topic: str, group: str) -> None:
    """An idle consumer: the services' consumer loop with nothing to apply, until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = make_consumer(bootstrap, group, topic)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS)
            for tp, records in batch.items():
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


class BareConsumers:
    """`count` child processes of this script, each one bare idle consumer in its own group."""

    def __init__(self, bootstrap: str, count: int, log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.count = count
        self.topic = f"bench.idle.{uuid.uuid4().hex[:8]}"
        self.log = log_dir / "bare-consumers.log"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Starts the processes; their topic must exist (`ensure_topics`)."""
        with self.log.open("ab") as log:
            for index in range(self.count):
                group = f"{self.topic}-{index}"
                command = [sys.executable, __file__, "--bare-consumer", self.bootstrap]
                self.processes.append(
                    subprocess.Popen(
                        [*command, self.topic, group],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def pids(self) -> dict[str, int]:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a bare consumer exited; see {self.log}")
        return {f"bare-consumer-{i}": p.pid for i, p in enumerate(self.processes)}

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)


# --------------------------------------------------------------------------- windows


@dataclass
class Window:
    seconds: float
    cpu: dict[str, float]
    """CPU seconds per process of the measured set."""
    postgres: float
    broker: float

    @property
    def total(self) -> float:
        return sum(self.cpu.values())

    def per_second(self, cpu_seconds: float) -> float:
        """Milliseconds of CPU per second of wall time (thousandths of a core)."""
        return cpu_seconds * 1000 / self.seconds


async def window(pids: dict[str, int], seconds: float, postmaster: int, broker: int) -> Window:
    before = {name: process_cpu(pid) for name, pid in pids.items()}
    postgres_before, broker_before = postgres_cpu(postmaster), process_cpu(broker)
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    cpu = {name: process_cpu(pid) - before[name] for name, pid in pids.items()}
    return Window(
        elapsed,
        cpu,
        postgres_cpu(postmaster) - postgres_before,
        process_cpu(broker) - broker_before,
    )


def broker_pid(broker: KafkaBroker) -> int:
    """The broker's JVM: the process started with this broker's properties file."""
    wanted = str(broker.properties_file)
    for pid in all_processes():
        if wanted in command_line(pid):
            return pid
    raise RuntimeError("the Kafka broker's process was not found")


# --------------------------------------------------------------------------- main


async def measure(sizes: Sizes, tmp: Path) -> dict[str, Any]:
    log_dir = tmp / "logs"
    log_dir.mkdir()
    broker = KafkaBroker(tmp / "kafka")
    broker.start()
    cluster = PostgresCluster()
    cluster.start()
    try:
        return await measure_on(sizes, cluster, broker, tmp, log_dir)
    finally:
        cluster.stop()
        cluster.cleanup()
        broker.stop()


async def measure_on(
    sizes: Sizes, cluster: PostgresCluster, broker: KafkaBroker, tmp: Path, log_dir: Path
) -> dict[str, Any]:
    policy = tmp / "policy.yaml"
    policy.write_text("{}\n")
    system = await build_system(
        cluster,
        broker.bootstrap_servers,
        log_dir,
        name="idle",
        services=SERVICES,
        secret=SECRET,
        policy=policy,
    )
    commands = [(service, command) for service in SERVICES for command in ROLES[service]]
    bare = BareConsumers(broker.bootstrap_servers, len(commands), log_dir)
    postmaster = postmaster_pid(cluster.data_dir)
    load = OtherLoad(postmaster)
    ours_windows: list[Window] = []
    bare_windows: list[Window] = []
    try:
        for service, command in commands:
            system.start(service, command)
        await ensure_topics(broker.bootstrap_servers, [bare.topic], PARTITIONS)
        bare.start()
        await system.wait_ready()
        print(
            f"{len(commands)} service processes and {bare.count} bare consumers started; "
            f"settling for {sizes.settle:g} s",
            flush=True,
        )
        await asyncio.sleep(sizes.settle)
        ours_pids, bare_pids = system.pids(), bare.pids()
        kafka = broker_pid(broker)
        load.start()
        for pair in range(sizes.pairs):
            ours_windows.append(await window(ours_pids, sizes.window, postmaster, kafka))
            bare_windows.append(await window(bare_pids, sizes.window, postmaster, kafka))
            system.check_alive()
            bare.pids()
            ours, reference = ours_windows[-1], bare_windows[-1]
            print(
                f"  pair {pair + 1}: ours {ours.per_second(ours.total):6.1f} ms CPU/s | bare "
                f"{reference.per_second(reference.total):6.1f} ms CPU/s | ratio "
                f"{ours.total / reference.total:.2f}x",
                flush=True,
            )
        other_cores = load.cores()
    finally:
        bare.stop()
        system.stop_all()
    return report(ours_windows, bare_windows, sizes, other_cores)


def report(
    ours: list[Window], bare: list[Window], sizes: Sizes, other_cores: float
) -> dict[str, Any]:
    def median_per_process(windows: list[Window]) -> dict[str, float]:
        medians = {
            name: statistics.median(w.per_second(w.cpu[name]) for w in windows)
            for name in windows[0].cpu
        }
        return {k: round(v, 2) for k, v in sorted(medians.items(), key=lambda kv: -kv[1])}

    return {
        "window_seconds": sizes.window,
        "settle_seconds": sizes.settle,
        "processes": len(ours[0].cpu),
        "unit": "milliseconds of CPU per second (thousandths of a core)",
        "pairs": [
            {
                "ours": round(o.per_second(o.total), 2),
                "bare": round(b.per_second(b.total), 2),
                "ratio": round(o.total / b.total, 3),
                "postgres_during_ours": round(o.per_second(o.postgres), 2),
                "broker_during_ours": round(o.per_second(o.broker), 2),
                "broker_during_bare": round(b.per_second(b.broker), 2),
            }
            for o, b in zip(ours, bare, strict=True)
        ],
        "ours_per_process": median_per_process(ours),
        "bare_per_process": median_per_process(bare),
        "postgres_during_ours": round(statistics.median(w.per_second(w.postgres) for w in ours), 2),
        "other_processes_cores": other_cores,
        "figures": [
            figure(
                f"idle: the {len(ours[0].cpu)} service processes against as many bare "
                "idle consumers, CPU",
                " ms/s",
                [w.per_second(w.total) for w in ours],
                [w.per_second(w.total) for w in bare],
                at_most=TARGET,
            ),
            figure(
                "idle, PostgreSQL included (informational)",
                " ms/s",
                [w.per_second(w.total + w.postgres) for w in ours],
                [w.per_second(w.total) for w in bare],
            ),
        ],
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--bare-consumer":
        asyncio.run(bare_consumer(*sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    parser.add_argument("--window", type=float, help="seconds per window (20)")
    parser.add_argument("--pairs", type=int, help="alternated pairs of windows (3)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(
        pairs=args.pairs or sizes.pairs, window=args.window or sizes.window, settle=sizes.settle
    )
    os.chdir(ROOT)  # `python -m booking` must find the service, not bench/booking.py
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(sizes, Path(tmp)))
    result = {"quick": args.quick, "machine": describe_machine(), **result}
    path = write_results("idle", result)
    print(f"idle CPU per process ({result['unit']}), median of the windows:")
    for name, value in result["ours_per_process"].items():
        print(f"  {name:<22} {value:7.2f}")
    bare_values = list(result["bare_per_process"].values())
    print(
        f"  bare consumers: {min(bare_values):.2f} to {max(bare_values):.2f} each; "
        f"PostgreSQL during ours' windows {result['postgres_during_ours']:.2f}"
    )
    print_figures(result["figures"])
    warn_if_busy(result["other_processes_cores"])
    print(f"written to {path}")


if __name__ == "__main__":
    main()

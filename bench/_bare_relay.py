"""A bare two-hop aiokafka relay through a separate process: a reference for event latency.

The benchmark process produces a record to topic A; a child process started by the benchmark
(`python bench/_bare_relay.py --serve ...`) consumes A and produces the record to topic B; the
benchmark reads it back from B. Two hops through the same broker and two process boundaries,
no database, no envelope, no handler.

Every client is built by clinic_shared.kafka, as the services build theirs: producers
`acks="all"`, idempotent, `linger_ms=2`; consumers in a group, manual commits,
`read_committed`, aiokafka's fetch defaults (`fetch_max_wait_ms=500`, `fetch_min_bytes=1`).
The child's loop is the services' consumer loop without the database: `getmany` with the
services' poll timeout (500 ms), each record produced and acknowledged, then the partition's
offset committed. The benchmark reads B the same way.

    relay = BareRelay(bootstrap, log_dir)
    await relay.start()
    seconds = await relay.one()  # produce to A ... read back from B
    await relay.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from clinic_shared.kafka import ensure_topics, make_consumer, make_producer

POLL_TIMEOUT_MS = 500  # the services' consumer_poll_timeout_ms
MAX_RECORDS = 500  # EventConsumer's max_records
PARTITIONS = 3  # the services' topic_partitions


class BareRelay:
    """The benchmark's side: a producer to topic A, the child process, a reader of topic B."""

    def __init__(self, bootstrap: str, log_dir: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.topic_a, self.topic_b = f"bench.bare.a.{suffix}", f"bench.bare.b.{suffix}"
        self.hop_group, self.read_group = f"bench-bare-hop-{suffix}", f"bench-bare-read-{suffix}"
        self.producer = make_producer(bootstrap, client_id="bench-bare-producer")
        self.reader = make_consumer(bootstrap, self.read_group, self.topic_b)
        self.log = log_dir / "bare-relay.log"
        self.process: asyncio.subprocess.Process | None = None
        self.waiting: dict[bytes, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, [self.topic_a, self.topic_b], PARTITIONS)
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--serve",
                self.bootstrap,
                self.topic_a,
                self.topic_b,
                self.hop_group,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        await self.producer.start()
        await self.reader.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.reader.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS)
            arrived = time.perf_counter()
            for tp, records in batch.items():
                for record in records:
                    future = self.waiting.pop(record.key, None)
                    if future is not None and not future.done():
                        future.set_result(arrived)
                await self.reader.commit({tp: records[-1].offset + 1})

    async def one(self, timeout: float = 30.0) -> float:
        """Seconds from just before the produce to A until the record is read from B."""
        if self.process is None or self.process.returncode is not None:
            raise RuntimeError(f"the bare relay process is not running:\n{self.log_tail()}")
        key = uuid.uuid4().hex.encode()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        started = time.perf_counter()
        await self.producer.send_and_wait(self.topic_a, value=b'{"bench": 1}', key=key)
        try:
            return await asyncio.wait_for(future, timeout) - started
        finally:
            self.waiting.pop(key, None)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def stop(self) -> None:
        if self.process is None:
            return  # never started
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self.reader.stop()
        await self.producer.stop()


# --------------------------------------------------------------------------- the child


async def serve(bootstrap: str, topic_a: str, topic_b: str, group: str) -> None:
    """Consume A, produce every record to B (acknowledged), commit; until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer: AIOKafkaConsumer = make_consumer(bootstrap, group, topic_a)
    producer = make_producer(bootstrap, client_id=f"{group}-producer")
    await producer.start()
    await consumer.start()
    print("bare relay started", flush=True)
    relayed = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS)
            for tp, records in batch.items():
                for record in records:
                    await producer.send_and_wait(
                        topic_b, value=record.value, key=record.key, headers=record.headers
                    )
                    relayed += 1
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()
        await producer.stop()
        print(f"bare relay stopped after {relayed} records", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the child of the bare two-hop relay")
    parser.add_argument("--serve", nargs=4, metavar=("BOOTSTRAP", "TOPIC_A", "TOPIC_B", "GROUP"))
    args = parser.parse_args()
    if not args.serve:
        parser.error("--serve BOOTSTRAP TOPIC_A TOPIC_B GROUP")
    asyncio.run(serve(*args.serve))

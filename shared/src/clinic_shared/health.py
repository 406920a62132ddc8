"""Consumer liveness: progress, not just a live process.

A consumer process is alive for Kafka as long as its heartbeat thread runs, even when its poll
loop is wedged in a handler or it rereads the same failing event forever. What tells is
progress: how long ago the loop last polled, how far behind the topic end each partition it
owns is (lag), and how long ago it last got anywhere. `ConsumerProgress` keeps those figures;
`serve_health` answers `GET /livez` (200 ok, 503 stalled, with the figures as JSON) and
`GET /metrics` (the same as Prometheus gauges) on a port of the consumer process itself, for a
Kubernetes liveness probe or an operator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from clinic_shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PartitionProgress:
    topic: str
    partition: int
    next_offset: int | None
    """The next offset this consumer will apply; None until it has seen the partition's data."""
    end_offset: int | None
    """The partition's high watermark at the last fetch; None before the first fetch."""
    lag: int


@dataclass(frozen=True)
class ConsumerHealth:
    consumer: str
    status: str
    """`ok`, or `stalled` with a `reason`."""
    reason: str | None
    last_poll_age_seconds: float
    seconds_since_progress: float
    lag: int
    applied: int
    duplicates: int
    dead_lettered: int
    partitions: list[PartitionProgress] = field(default_factory=list)

    @property
    def stalled(self) -> bool:
        return self.status == "stalled"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class ConsumerProgress:
    """What the poll loop reports as it goes; read by the health endpoint."""

    def __init__(
        self,
        name: str,
        *,
        stall_after_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stall_after_seconds = stall_after_seconds
        self._monotonic = monotonic
        self._last_poll = monotonic()
        self._last_progress = monotonic()
        self._next_offsets: dict[TopicPartition, int] = {}

    def polled(self) -> None:
        self._last_poll = self._monotonic()

    def fetched(self, tp: TopicPartition, first_offset: int) -> None:
        """A batch for `tp` starts at `first_offset`: the lag counts from there until it is
        applied."""
        self._next_offsets.setdefault(tp, first_offset)

    def applied(self, tp: TopicPartition, offset: int) -> None:
        self._next_offsets[tp] = offset + 1
        self._last_progress = self._monotonic()

    def rewound(self, tp: TopicPartition, offset: int) -> None:
        self._next_offsets[tp] = offset

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._next_offsets.pop(tp, None)

    def snapshot(
        self,
        assignment: Iterable[TopicPartition],
        end_offset: Callable[[TopicPartition], int | None],
        counters: tuple[int, int, int],
    ) -> ConsumerHealth:
        now = self._monotonic()
        partitions = []
        for tp in sorted(assignment):
            end = end_offset(tp)
            next_offset = self._next_offsets.get(tp)
            lag = max(0, end - next_offset) if end is not None and next_offset is not None else 0
            partitions.append(PartitionProgress(tp.topic, tp.partition, next_offset, end, lag))
        lag = sum(p.lag for p in partitions)
        if lag == 0:
            self._last_progress = now  # caught up is progress: an idle consumer is fine
        poll_age = now - self._last_poll
        since_progress = now - self._last_progress
        reason = None
        if poll_age > self.stall_after_seconds:
            reason = f"no poll for {poll_age:.0f}s"
        elif since_progress > self.stall_after_seconds:
            reason = f"lag {lag} and no progress for {since_progress:.0f}s"
        applied, duplicates, dead_lettered = counters
        return ConsumerHealth(
            consumer=self.name,
            status="stalled" if reason else "ok",
            reason=reason,
            last_poll_age_seconds=round(poll_age, 3),
            seconds_since_progress=round(since_progress, 3),
            lag=lag,
            applied=applied,
            duplicates=duplicates,
            dead_lettered=dead_lettered,
            partitions=partitions,
        )


def render_metrics(health: ConsumerHealth) -> bytes:
    registry = CollectorRegistry()
    labels = ["consumer"]
    gauges = {
        "clinic_consumer_last_poll_age_seconds": health.last_poll_age_seconds,
        "clinic_consumer_seconds_since_progress": health.seconds_since_progress,
        "clinic_consumer_stalled": 1.0 if health.stalled else 0.0,
        "clinic_consumer_applied": float(health.applied),
        "clinic_consumer_duplicates": float(health.duplicates),
        "clinic_consumer_dead_lettered": float(health.dead_lettered),
    }
    for name, value in gauges.items():
        Gauge(name, name.replace("_", " "), labels, registry=registry).labels(health.consumer).set(
            value
        )
    lag = Gauge(
        "clinic_consumer_lag",
        "records between the consumer's position and the partition's end",
        ["consumer", "topic", "partition"],
        registry=registry,
    )
    for p in health.partitions:
        lag.labels(health.consumer, p.topic, str(p.partition)).set(p.lag)
    return generate_latest(registry)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def serve_health(
    host: str, port: int, snapshot: Callable[[], ConsumerHealth]
) -> asyncio.Server:
    """A minimal HTTP/1.1 server for `/livez` and `/metrics` in the consumer's own event loop:
    if a handler blocks the loop, the probe gets no answer, which a prober counts as failed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                del line  # headers are not needed
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = _answer(method, path, snapshot)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("consumer health endpoint listening", port=port)
    return server


def _answer(
    method: str, path: str, snapshot: Callable[[], ConsumerHealth]
) -> tuple[int, str, bytes]:
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"method not allowed\n"
    if path == "/livez":
        health = snapshot()
        body = json.dumps(health.as_json()).encode()
        return (503 if health.stalled else 200), "application/json", body
    if path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(snapshot())
    return 404, "text/plain", b"not found\n"

"""Booking over HTTP beside bare FastAPI endpoints on the same PostgreSQL.

Everything runs on this machine: a throwaway PostgreSQL cluster (clinic_local), the booking API
as its real entrypoint (`python -m booking api`: uvicorn, access log off, its own structlog
request log to /dev/null) and a bare FastAPI app served the same way by this script in another
process. The load comes from httpx clients in this process over TCP, one client (one keep-alive
connection) per concurrent caller. CPU time is read from /proc for this process, each server,
and PostgreSQL's backends, and also for the whole machine, so that other load shows up.

1. Throughput and p99 at a fixed concurrency: booking one `maintenance` infusion
   (`POST /v1/courses`: token, validation, per-chair advisory lock, overlap checks, course and
   appointment inserts under the exclusion constraint, outbox rows, 201) against a bare endpoint
   doing one raw asyncpg INSERT; then a six-infusion `mood_induction` course against the same
   bare endpoint. Runs alternate (ours, bare, ours, ...); every booking must answer 201.
   Then the same maintenance booking and bare insert one request at a time.
2. Bursts: 32 concurrent bookings of one slot (distinct patients), against bursts of 32
   concurrent `pg_advisory_xact_lock` + check-then-insert requests to the bare app, alternated.
   Each burst must give exactly one 201 and 31 409s.
3. Availability search for a mood induction over three weeks, eight chairs, a calendar about
   55% booked, one request at a time.

Prints the figures and writes them to bench/results/booking.json.

    uv run python bench/booking.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from _common import (
    check,
    figure,
    machine_busy_seconds,
    ms,
    p99,
    percentile,
    postgres_cpu,
    postmaster_pid,
    print_figures,
    process_cpu,
    split_into_pairs,
    write_results,
)
from pydantic import BaseModel, ConfigDict, Field

from clinic_local.postgres import PostgresCluster, to_raw_dsn
from clinic_shared.testing import bearer

# This file is named like the service it measures (so `import booking` would find this file):
# it reaches the service only through its entrypoint, `python -m booking api|migrate`.
SECRET = "bench-secret-" + uuid.uuid4().hex
ZONE = ZoneInfo("America/Los_Angeles")
CONCURRENCY = 16
BURST = 32
BURST_MAX_MS = 1000.0
SCREENING_CLEAR = {
    "psychosis": False,
    "seizure_disorder": False,
    "aminophylline_use": False,
    "uncontrolled_hypertension": False,
    "unstable_cardiopulmonary_disease": False,
}
# A first infusion visit lasts 150 minutes: these starts fit it (and any shorter visit) back to
# back inside opening hours (Mon-Fri 08:00-18:00, Sat 09:00-14:00).
CELL_STARTS = {
    **{weekday: ["08:00", "10:30", "13:00", "15:30"] for weekday in range(5)},
    5: ["09:00", "11:30"],
}


@dataclass(frozen=True)
class Sizes:
    pairs: int
    maintenance: int
    induction: int
    bare: int
    sequential: int
    bursts: int
    searches: int


FULL = Sizes(
    pairs=5, maintenance=1500, induction=300, bare=4000, sequential=200, bursts=40, searches=300
)
QUICK = Sizes(
    pairs=3, maintenance=300, induction=80, bare=800, sequential=60, bursts=10, searches=60
)


# --------------------------------------------------------------------------- figures


@dataclass
class Run:
    """One load run: latencies in seconds, statuses, wall time and CPU spent per component."""

    latencies: list[float]
    statuses: Counter[int]
    elapsed: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def summary(self) -> dict[str, Any]:
        count = len(self.latencies)
        return {
            "requests": count,
            "per_second": round(self.throughput, 1),
            "p50_ms": ms(statistics.median(self.latencies)),
            "p99_ms": ms(percentile(self.latencies, 0.99)),
            "max_ms": ms(max(self.latencies)),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "cpu_ms_per_request": {k: round(v * 1000 / count, 3) for k, v in self.cpu.items()},
            "other_processes_cores": self.other_cores,
        }

    @property
    def other_cores(self) -> float:
        """CPU that processes outside this benchmark used meanwhile, in cores."""
        return round(self.cpu.get("other", 0.0) / self.elapsed, 2)


class CpuMeter:
    """CPU seconds used so far by this process, the servers and PostgreSQL's backends."""

    def __init__(self, servers: dict[str, int], cluster: PostgresCluster) -> None:
        self._servers = servers
        self._postmaster = postmaster_pid(cluster.data_dir)

    def snapshot(self) -> dict[str, float]:
        figures = {"client": time.process_time()}
        for name, pid in self._servers.items():
            figures[name] = process_cpu(pid)
        figures["postgres"] = postgres_cpu(self._postmaster)
        # Every process on the machine, so that load from anything else shows up.
        figures["machine"] = machine_busy_seconds()
        return figures

    @contextmanager
    def measure(self, run: Run) -> Iterator[None]:
        before = self.snapshot()
        yield
        after = self.snapshot()
        run.cpu = {k: after[k] - before[k] for k in after if k != "machine"}
        run.cpu["other"] = max(0.0, after["machine"] - before["machine"] - sum(run.cpu.values()))


# --------------------------------------------------------------------------- the calendar


class CellPlan:
    """Hands out chair times nobody else is given: whole weeks at a time, never twice.

    Every cell is one chair at one of the `CELL_STARTS` of a day, so a booking in one cell
    never overlaps another's, whichever patient or protocol it is for.
    """

    def __init__(self, chairs: int, first_monday: date) -> None:
        self.chairs = [f"chair-{n}" for n in range(1, chairs + 1)]
        self._next_week = first_monday

    def _take_week(self) -> date:
        monday = self._next_week
        self._next_week += timedelta(weeks=1)
        return monday

    def singles(self, count: int) -> list[tuple[str, str]]:
        """`count` (start, chair): chairs first, then times, then days."""

        def cells() -> Iterator[tuple[str, str]]:
            while True:
                monday = self._take_week()
                for weekday, starts in CELL_STARTS.items():
                    for start in starts:
                        at = local(monday + timedelta(days=weekday), start)
                        for chair in self.chairs:
                            yield at, chair

        return list(itertools.islice(cells(), count))

    def inductions(self, count: int) -> list[list[tuple[str, str]]]:
        """`count` six-infusion courses: Mon, Wed, Fri of two weeks, one chair, one time."""

        def courses() -> Iterator[list[tuple[str, str]]]:
            while True:
                monday = self._take_week()
                self._take_week()
                days = [monday + timedelta(days=d) for d in (0, 2, 4, 7, 9, 11)]
                for start in CELL_STARTS[0]:
                    for chair in self.chairs:
                        yield [(local(day, start), chair) for day in days]

        return list(itertools.islice(courses(), count))


def local(day: date, wall: str) -> str:
    hour, minute = (int(part) for part in wall.split(":"))
    return datetime.combine(day, wall_time(hour, minute), tzinfo=ZONE).isoformat()


def next_monday(after: date, weeks: int = 1) -> date:
    return after + timedelta(days=7 - after.weekday()) + timedelta(weeks=weeks - 1)


def course_body(patient_id: str, protocol: str, slots: Sequence[tuple[str, str]]) -> dict:
    return {
        "patient_id": patient_id,
        "protocol": protocol,
        "slots": [{"start": start, "chair_id": chair} for start, chair in slots],
    }


# --------------------------------------------------------------------------- setup


async def add_patients(url: str, count: int, *, cleared: bool) -> list[str]:
    """Patients with a mood intake (cleared when asked), written straight to booking's tables:
    set-up, not measured (the rows POST /v1/patients and PUT .../intake would write)."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    patients = [
        (pid, "Bench", f"Patient {pid.hex[:6]}", date(1980, 1, 1), f"p{pid.hex[:12]}@example.org")
        for pid in ids
    ]
    status, cleared_at, cleared_by = (
        ("cleared", now, "dr-bench") if cleared else ("pending", None, None)
    )
    screening = json.dumps(SCREENING_CLEAR)
    medications = json.dumps([{"name": "sertraline", "class": "other"}])
    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO patient (id, first_name, last_name, date_of_birth, email, phone, "
                "registered_at, registered_by) VALUES ($1, $2, $3, $4, $5, '+15035550123', "
                "$6, 'staff')",
                [(*patient, now) for patient in patients],
            )
            await conn.executemany(
                "INSERT INTO intake (patient_id, condition, screening, medications, "
                "diagnosis_codes, status, submitted_at, cleared_at, cleared_by) "
                "VALUES ($1, 'mood', $2::json, $3::json, $4::json, $5, $6, $7, $8)",
                [
                    (pid, screening, medications, '["F33.2"]', status, now, cleared_at, cleared_by)
                    for pid in ids
                ],
            )
    finally:
        await conn.close()
    return [str(pid) for pid in ids]


BARE_SCHEMA = """
CREATE TABLE bare_booking (
    id uuid PRIMARY KEY,
    patient_id uuid NOT NULL,
    protocol text NOT NULL,
    chair_id text NOT NULL,
    start_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bare_slot (
    id uuid PRIMARY KEY,
    patient_id uuid NOT NULL,
    chair_id text NOT NULL,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL
);
CREATE INDEX bare_slot_chair_start ON bare_slot (chair_id, start_at);
"""


async def create_bare_tables(url: str) -> None:
    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        await conn.execute(BARE_SCHEMA)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- the bare app


class SlotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime
    chair_id: str = Field(min_length=1, max_length=32)


class CourseIn(BaseModel):
    """The booking API's request body, as the bare endpoints read it."""

    model_config = ConfigDict(extra="forbid")
    patient_id: uuid.UUID
    protocol: str = Field(min_length=1, max_length=32)
    slots: list[SlotIn] = Field(min_length=1, max_length=20)


def bare_app(dsn: str) -> Any:
    """The reference: FastAPI, the same request body, one asyncpg pool, no framework of ours."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    pool: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        pool["db"] = await asyncpg.create_pool(dsn, min_size=10, max_size=20)
        yield
        await pool["db"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/insert", status_code=201)
    async def insert(body: CourseIn) -> dict[str, str]:
        row_id = uuid.uuid4()
        slot = body.slots[0]
        await pool["db"].execute(
            "INSERT INTO bare_booking (id, patient_id, protocol, chair_id, start_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            row_id,
            body.patient_id,
            body.protocol,
            slot.chair_id,
            slot.start,
        )
        return {"id": str(row_id)}

    @app.post("/bare/locked", status_code=201, response_model=None)
    async def locked(body: CourseIn) -> dict[str, str] | JSONResponse:
        row_id = uuid.uuid4()
        slot = body.slots[0]
        end = slot.start + timedelta(minutes=150)
        key = zlib.crc32(slot.chair_id.encode()) - 2**31
        async with pool["db"].acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", 0x0BA2E, key)
            taken = await conn.fetchval(
                "SELECT 1 FROM bare_slot WHERE chair_id = $1 AND start_at < $2 AND end_at > $3",
                slot.chair_id,
                end,
                slot.start,
            )
            if taken:
                return JSONResponse({"detail": "taken"}, status_code=409)
            await conn.execute(
                "INSERT INTO bare_slot (id, patient_id, chair_id, start_at, end_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                row_id,
                body.patient_id,
                slot.chair_id,
                slot.start,
                end,
            )
        return {"id": str(row_id)}

    return app


def serve_bare(port: int, dsn: str) -> None:
    import uvicorn

    uvicorn.run(bare_app(dsn), host="127.0.0.1", port=port, access_log=False, log_config=None)


# --------------------------------------------------------------------------- servers


class Server:
    """A server process this script started, stopped by its own pid."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, logs: Path):
        self.name = name
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = logs / f"{name}.stderr"
        with self._log.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self._log.read_text()[-3000:]}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready:\n{self._log.read_text()[-3000:]}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


async def migrate(url: str) -> None:
    env = os.environ | {"BOOKING_DATABASE_URL": url, "CLINIC_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "booking", "migrate", env=env, stdout=subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError("python -m booking migrate failed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def booking_server(url: str, port: int, policy: Path, logs: Path) -> Server:
    env = {
        "BOOKING_DATABASE_URL": url,
        "BOOKING_HTTP_HOST": "127.0.0.1",
        "BOOKING_HTTP_PORT": str(port),
        "CLINIC_JWT_SECRET": SECRET,
        "CLINIC_POLICY_FILE": str(policy),
    }
    return Server("booking", [sys.executable, "-m", "booking", "api"], env, port, logs)


def bare_server(url: str, port: int, logs: Path) -> Server:
    command = [sys.executable, __file__, "--serve-bare", str(port), to_raw_dsn(url)]
    return Server("bare", command, {}, port, logs)


@asynccontextmanager
async def clients(server: Server, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` clients of one keep-alive connection each, connected before anything is timed.

    One client per concurrent caller: a single httpx client sharing a pool of 16 connections
    spends twice the CPU per request and leaves a tenth of the requests waiting over 50 ms in
    its own pool (measured on the bare endpoint: 590/s with a p99 of 143 ms, against 1,300/s
    and 17-32 ms with one client per caller).
    """
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    opened = [
        httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) for _ in range(count)
    ]
    try:
        await asyncio.gather(*(client.get("/healthz") for client in opened))
        yield opened
    finally:
        await asyncio.gather(*(client.aclose() for client in opened))


async def load(
    callers: Sequence[httpx.AsyncClient],
    path: str,
    bodies: Sequence[dict],
    headers: dict[str, str],
    meter: CpuMeter | None = None,
) -> Run:
    """POST every body, one request in flight per caller."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    position = itertools.count()

    async def worker(client: httpx.AsyncClient) -> None:
        while (index := next(position)) < len(bodies):
            started = time.perf_counter()
            response = await client.post(path, json=bodies[index], headers=headers)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
            if response.status_code != 201 and len(failures) < 3:
                failures.append(f"{response.status_code} {response.text[:300]}")

    run = Run(latencies, statuses, 0.0)
    with meter.measure(run) if meter else nullcontext():
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in callers))
        run.elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{path}: not every request answered 201: {statuses}; {failures}")
    return run


async def burst(
    callers: Sequence[httpx.AsyncClient],
    path: str,
    bodies: Sequence[dict],
    headers: dict[str, str],
) -> tuple[list[float], list[int]]:
    """Every body at once, each from its own caller."""

    async def one(client: httpx.AsyncClient, body: dict) -> tuple[float, int]:
        started = time.perf_counter()
        response = await client.post(path, json=body, headers=headers)
        return time.perf_counter() - started, response.status_code

    answers = await asyncio.gather(
        *(one(client, body) for client, body in zip(callers, bodies, strict=True))
    )
    return [latency for latency, _ in answers], [status for _, status in answers]


def pair_figures(
    ours: list[Run], bare: list[Run], concurrency: int = CONCURRENCY
) -> dict[str, Any]:
    """Per pair (ours, bare): throughput ratio and p99 ratio; the medians of the pairs."""
    pairs = [
        {
            "ours": o.summary(),
            "bare": b.summary(),
            "throughput_ratio": round(o.throughput / b.throughput, 3),
            "p99_ratio": round(percentile(o.latencies, 0.99) / percentile(b.latencies, 0.99), 2),
        }
        for o, b in zip(ours, bare, strict=True)
    ]
    return {
        "concurrency": concurrency,
        "ours_per_second": round(statistics.median(o.throughput for o in ours), 1),
        "bare_per_second": round(statistics.median(b.throughput for b in bare), 1),
        "ours_p99_ms": ms(statistics.median(percentile(o.latencies, 0.99) for o in ours)),
        "bare_p99_ms": ms(statistics.median(percentile(b.latencies, 0.99) for b in bare)),
        "ours_p50_ms": ms(statistics.median(statistics.median(o.latencies) for o in ours)),
        "bare_p50_ms": ms(statistics.median(statistics.median(b.latencies) for b in bare)),
        "throughput_ratio": statistics.median(p["throughput_ratio"] for p in pairs),
        "p99_ratio": statistics.median(p["p99_ratio"] for p in pairs),
        "ours_cpu_ms_per_request": median_cpu(ours, "bare_server"),
        "bare_cpu_ms_per_request": median_cpu(bare, "booking_server"),
        "max_other_processes_cores": max(r.other_cores for r in [*ours, *bare]),
        "pairs": pairs,
    }


def median_cpu(runs: Sequence[Run], idle: str) -> dict[str, float]:
    """Median CPU milliseconds per request of each component (but the idle server)."""
    return {
        name: round(statistics.median(r.cpu[name] * 1000 / len(r.latencies) for r in runs), 3)
        for name in runs[0].cpu
        if name != idle
    }


# --------------------------------------------------------------------------- 1. throughput


async def throughput(
    sizes: Sizes, url: str, plan: CellPlan, ours: Server, bare: Server, meter: CpuMeter
) -> dict[str, Any]:
    scheduler = bearer(SECRET, "scheduler", "sched-bench")
    warm = 200
    maintenance_patients = await add_patients(
        url, sizes.pairs * (sizes.maintenance + sizes.sequential) + warm, cleared=False
    )
    induction_patients = await add_patients(url, sizes.pairs * sizes.induction + warm, cleared=True)
    maintenance = [
        course_body(p, "maintenance", [cell])
        for p, cell in zip(
            maintenance_patients, plan.singles(len(maintenance_patients)), strict=True
        )
    ]
    induction = [
        course_body(p, "mood_induction", cells)
        for p, cells in zip(
            induction_patients, plan.inductions(len(induction_patients)), strict=True
        )
    ]
    references = plan.singles(sizes.bare)  # bare rows need no room; any cell will do
    bare_bodies = [course_body(str(uuid.uuid4()), "maintenance", [c]) for c in references]

    results: dict[str, Any] = {}
    async with (
        clients(ours, CONCURRENCY) as ours_callers,
        clients(bare, CONCURRENCY) as bare_callers,
    ):
        # Warm-up, not counted: connection pools, prepared statements, caches.
        await load(ours_callers, "/v1/courses", maintenance[:warm], scheduler)
        await load(ours_callers, "/v1/courses", induction[: warm // 4], scheduler)
        await load(bare_callers, "/bare/insert", bare_bodies[:warm], {})
        maintenance, induction = maintenance[warm:], induction[warm // 4 :]
        for name, bodies, size in (
            ("maintenance", maintenance, sizes.maintenance),
            ("mood_induction", induction, sizes.induction),
        ):
            ours_runs, bare_runs = [], []
            for pair in range(sizes.pairs):
                batch = bodies[pair * size : (pair + 1) * size]
                ours_runs.append(await load(ours_callers, "/v1/courses", batch, scheduler, meter))
                bare_runs.append(await load(bare_callers, "/bare/insert", bare_bodies, {}, meter))
                print(
                    f"  {name} pair {pair + 1}: ours {ours_runs[-1].throughput:7.1f}/s "
                    f"p99 {ms(percentile(ours_runs[-1].latencies, 0.99)):7.2f} ms | bare "
                    f"{bare_runs[-1].throughput:7.1f}/s "
                    f"p99 {ms(percentile(bare_runs[-1].latencies, 0.99)):7.2f} ms",
                    flush=True,
                )
            results[name] = pair_figures(ours_runs, bare_runs)
        # One request at a time: what a booking costs when nothing waits for anything.
        ours_runs, bare_runs = [], []
        sequential = maintenance[sizes.pairs * sizes.maintenance :]
        for pair in range(sizes.pairs):
            batch = sequential[pair * sizes.sequential : (pair + 1) * sizes.sequential]
            ours_runs.append(await load(ours_callers[:1], "/v1/courses", batch, scheduler, meter))
            bare_runs.append(
                await load(bare_callers[:1], "/bare/insert", bare_bodies[: len(batch)], {}, meter)
            )
        results["maintenance_one_at_a_time"] = pair_figures(ours_runs, bare_runs, concurrency=1)
    return results


# --------------------------------------------------------------------------- 2. bursts


async def bursts(
    sizes: Sizes, url: str, plan: CellPlan, ours: Server, bare: Server, meter: CpuMeter
) -> dict[str, Any]:
    scheduler = bearer(SECRET, "scheduler", "sched-bench")
    patients = await add_patients(url, sizes.bursts * BURST, cleared=False)
    slots = plan.singles(sizes.bursts * 2)
    ours_latencies: list[float] = []
    bare_latencies: list[float] = []
    ours_p99s: list[float] = []
    bare_p99s: list[float] = []
    ours_bursts: list[list[float]] = []
    bare_bursts: list[list[float]] = []
    exact = {"ours": 0, "bare": 0}
    statuses: dict[str, Counter[int]] = {"ours": Counter(), "bare": Counter()}
    phase = Run([], Counter(), 0.0)
    async with clients(ours, BURST) as ours_callers, clients(bare, BURST) as bare_callers:
        started = time.perf_counter()
        with meter.measure(phase):
            for index in range(sizes.bursts):
                group = patients[index * BURST : (index + 1) * BURST]
                slot = slots[2 * index]
                ours_bodies = [course_body(p, "maintenance", [slot]) for p in group]
                latencies, answers = await burst(
                    ours_callers, "/v1/courses", ours_bodies, scheduler
                )
                ours_latencies += latencies
                ours_bursts.append(latencies)
                ours_p99s.append(percentile(latencies, 0.99))
                statuses["ours"].update(answers)
                exact["ours"] += answers.count(201) == 1 and answers.count(409) == BURST - 1

                bare_slot = slots[2 * index + 1]
                bare_bodies = [course_body(p, "maintenance", [bare_slot]) for p in group]
                latencies, answers = await burst(bare_callers, "/bare/locked", bare_bodies, {})
                bare_latencies += latencies
                bare_bursts.append(latencies)
                bare_p99s.append(percentile(latencies, 0.99))
                statuses["bare"].update(answers)
                exact["bare"] += answers.count(201) == 1 and answers.count(409) == BURST - 1
        phase.elapsed = time.perf_counter() - started

    conn = await asyncpg.connect(to_raw_dsn(url))
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM appointment WHERE status = 'booked' "
            "AND patient_id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in patients],
        )
    finally:
        await conn.close()
    ours_p99, bare_p99 = percentile(ours_latencies, 0.99), percentile(bare_latencies, 0.99)

    def block_p99s(per_burst: list[list[float]]) -> list[float]:
        """The p99 of each block of consecutive bursts (a pair: ours' and bare's block)."""
        blocks = split_into_pairs(per_burst, sizes.pairs)
        return [ms(p99([latency for burst in block for latency in burst])) for block in blocks]

    return {
        "bursts": sizes.bursts,
        "contenders": BURST,
        "ours_exactly_one_winner": exact["ours"],
        "bare_exactly_one_winner": exact["bare"],
        "ours_statuses": {str(k): v for k, v in sorted(statuses["ours"].items())},
        "bare_statuses": {str(k): v for k, v in sorted(statuses["bare"].items())},
        "ours_5xx": sum(v for k, v in statuses["ours"].items() if k >= 500),
        "other_processes_cores": phase.other_cores,
        "appointments_stored": stored,
        "ours_p50_ms": ms(statistics.median(ours_latencies)),
        "ours_p99_ms": ms(ours_p99),
        "ours_max_ms": ms(max(ours_latencies)),
        "ours_over_1s": sum(1 for latency in ours_latencies if latency * 1000 > BURST_MAX_MS),
        "bare_p50_ms": ms(statistics.median(bare_latencies)),
        "bare_p99_ms": ms(bare_p99),
        "bare_max_ms": ms(max(bare_latencies)),
        "p99_ratio": round(ours_p99 / bare_p99, 2),
        "ours_p99_ms_per_burst": [ms(v) for v in ours_p99s],
        "bare_p99_ms_per_burst": [ms(v) for v in bare_p99s],
        "ours_p99_ms_per_block": block_p99s(ours_bursts),
        "bare_p99_ms_per_block": block_p99s(bare_bursts),
        "median_burst_p99_ratio": round(
            statistics.median(o / b for o, b in zip(ours_p99s, bare_p99s, strict=True)), 2
        ),
    }


# --------------------------------------------------------------------------- 3. search


SEARCH_CHAIRS = 8
SEARCH_DAYS = 21


OPEN_MINUTES = {weekday: (8 * 60, 18 * 60) for weekday in range(5)} | {5: (9 * 60, 14 * 60)}


def fill_plan(
    first_day: date, days: int, chairs: int, rng: random.Random, target: float
) -> list[tuple[str, str, int]]:
    """Appointments (start, chair, minutes) covering about `target` of the opening hours:
    per chair and day, at each half hour a visit starts with some probability (150 minutes
    for a first visit, 90 for a later one) or the half hour stays free."""

    def plan(chance: float) -> list[tuple[str, str, int]]:
        chosen = []
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            if day.weekday() not in OPEN_MINUTES:
                continue
            opens, closes = OPEN_MINUTES[day.weekday()]
            for chair in range(1, chairs + 1):
                at = opens
                while at < closes:
                    minutes = rng.choice((150, 90))
                    if at + minutes <= closes and rng.random() < chance:
                        start = local(day, f"{at // 60:02d}:{at % 60:02d}")
                        chosen.append((start, f"chair-{chair}", minutes))
                        at += minutes
                    else:
                        at += 30
        return chosen

    low, high = 0.0, 1.0
    for _ in range(20):
        chance = (low + high) / 2
        chosen = plan(chance)
        share = booked_share(chosen, first_day, days, chairs)
        if abs(share - target) < 0.01:
            break
        low, high = (chance, high) if share < target else (low, chance)
    return chosen


def booked_share(
    chosen: Sequence[tuple[str, str, int]], first_day: date, days: int, chairs: int
) -> float:
    """The share of the chairs' opening hours on those days that `chosen` occupies."""
    last_day = first_day + timedelta(days=days - 1)
    booked = sum(
        minutes
        for start, _, minutes in chosen
        if first_day <= date.fromisoformat(start[:10]) <= last_day
    )
    open_minutes = 0
    for offset in range(days):
        weekday = (first_day + timedelta(days=offset)).weekday()
        if weekday in OPEN_MINUTES:
            opens, closes = OPEN_MINUTES[weekday]
            open_minutes += (closes - opens) * chairs
    return booked / open_minutes


async def search(sizes: Sizes, cluster: PostgresCluster, tmp: Path) -> dict[str, Any]:
    url = await cluster.create_database_async("bench_search")
    await migrate(url)
    policy = tmp / "search_policy.yaml"
    policy.write_text(f"booking: {{chairs: {SEARCH_CHAIRS}}}\n")
    server = booking_server(url, free_port(), policy, tmp)
    try:
        await server.wait_ready()
        tomorrow = datetime.now(ZONE).date() + timedelta(days=1)
        # Fill a little past the window so searches near its end meet a busy calendar too.
        chosen = fill_plan(tomorrow, SEARCH_DAYS + 7, SEARCH_CHAIRS, random.Random(7), 0.55)
        share = booked_share(chosen, tomorrow, SEARCH_DAYS, SEARCH_CHAIRS)
        firsts = [c for c in chosen if c[2] == 150]
        laters = [c for c in chosen if c[2] == 90]
        patients = await add_patients(url, len(firsts) + 1, cleared=True)
        searcher, patients = patients[0], patients[1:]
        days_of = {p: {start[:10]} for p, (start, _, _) in zip(patients, firsts, strict=True)}
        scheduler = bearer(SECRET, "scheduler", "sched-bench")
        # First visits for new patients, then later (90-minute) visits for the same patients on
        # other days.
        bodies = [
            course_body(p, "maintenance", [(start, chair)])
            for p, (start, chair, _) in zip(patients, firsts, strict=True)
        ]
        later_bodies = []
        cycle = itertools.cycle(patients)
        for start, chair, _ in laters:
            patient = next(cycle)
            while start[:10] in days_of[patient]:  # one visit a day per patient: never a clash
                patient = next(cycle)
            days_of[patient].add(start[:10])
            later_bodies.append(course_body(patient, "maintenance", [(start, chair)]))
        async with clients(server, 8) as callers:
            await load(callers, "/v1/courses", bodies, scheduler)
            await load(callers, "/v1/courses", later_bodies, scheduler)
            client = callers[0]
            window_from = datetime.combine(tomorrow, wall_time(0), tzinfo=ZONE)
            params = {
                "protocol": "mood_induction",
                "patient_id": searcher,
                "from": window_from.isoformat(),
                "to": (window_from + timedelta(days=SEARCH_DAYS)).isoformat(),
            }
            options = None
            latencies: list[float] = []
            phase = Run(latencies, Counter(), 0.0)
            meter = CpuMeter({"booking_server": server.process.pid}, cluster)
            with meter.measure(phase):
                started_all = time.perf_counter()
                for index in range(sizes.searches + 20):
                    started = time.perf_counter()
                    response = await client.get(
                        "/v1/availability", params=params, headers=scheduler
                    )
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        raise RuntimeError(f"availability: {response.status_code} {response.text}")
                    options = len(response.json()["options"])
                    if index >= 20:  # the first twenty warm up
                        latencies.append(elapsed)
                phase.elapsed = time.perf_counter() - started_all
    finally:
        server.stop()
    return {
        "chairs": SEARCH_CHAIRS,
        "window_days": SEARCH_DAYS,
        "booked_share": round(share, 3),
        "appointments": len(chosen),
        "calendar_days": SEARCH_DAYS + 7,
        "first_visits": len(firsts),
        "options_returned": options,
        "searches": len(latencies),
        "p50_ms": ms(statistics.median(latencies)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies)),
        "server_cpu_ms_per_search": round(phase.cpu["booking_server"] * 1000 / len(latencies), 2),
        "other_processes_cores": phase.other_cores,
    }


# --------------------------------------------------------------------------- main


async def measure(sizes: Sizes, cluster: PostgresCluster, tmp: Path) -> dict[str, Any]:
    url = await cluster.create_database_async("bench_booking")
    await migrate(url)
    await create_bare_tables(url)
    chairs = 64
    policy = tmp / "policy.yaml"
    policy.write_text(f"booking: {{chairs: {chairs}}}\n")
    plan = CellPlan(chairs, next_monday(datetime.now(ZONE).date(), weeks=2))
    ours = booking_server(url, free_port(), policy, tmp)
    bare = bare_server(url, free_port(), tmp)
    figures: dict[str, Any] = {}
    try:
        await ours.wait_ready()
        await bare.wait_ready()
        meter = CpuMeter(
            {"booking_server": ours.process.pid, "bare_server": bare.process.pid}, cluster
        )
        print("1. throughput", flush=True)
        figures["throughput"] = await throughput(sizes, url, plan, ours, bare, meter)
        print("2. bursts", flush=True)
        figures["bursts"] = await bursts(sizes, url, plan, ours, bare, meter)
    finally:
        ours.stop()
        bare.stop()
    print("3. availability search", flush=True)
    figures["search"] = await search(sizes, cluster, tmp)
    return figures


def headline(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures issue 7 sets targets for, each the median of its pairs' ratios."""

    def pairs_of(name: str, key: str) -> tuple[list[float], list[float]]:
        pairs = figures["throughput"][name]["pairs"]
        return [p["ours"][key] for p in pairs], [p["bare"][key] for p in pairs]

    b, s = figures["bursts"], figures["search"]
    return [
        figure(
            "booking one infusion (maintenance), 16 callers: requests/s",
            "/s",
            *pairs_of("maintenance", "per_second"),
            at_least=0.30,
        ),
        figure(
            "booking one infusion (maintenance), 16 callers: p99",
            " ms",
            *pairs_of("maintenance", "p99_ms"),
            at_most=2.0,
        ),
        figure(
            "booking a mood induction course, 16 callers: requests/s (informational)",
            "/s",
            *pairs_of("mood_induction", "per_second"),
        ),
        figure(
            "booking one infusion, one at a time: p99 (informational)",
            " ms",
            *pairs_of("maintenance_one_at_a_time", "p99_ms"),
        ),
        figure(
            f"bursts of {b['contenders']} on one slot: p99 (blocks of bursts)",
            " ms",
            b["ours_p99_ms_per_block"],
            b["bare_p99_ms_per_block"],
            at_most=3.0,
        ),
        check(
            "bursts with exactly one success",
            f"{b['ours_exactly_one_winner']}/{b['bursts']}",
            "all",
            b["ours_exactly_one_winner"] == b["bursts"] == b["appointments_stored"],
        ),
        check("bursts: 5xx answers", b["ours_5xx"], "none", b["ours_5xx"] == 0),
        check("bursts: requests over 1 s", b["ours_over_1s"], "none", b["ours_over_1s"] == 0),
        check(
            f"availability search, {s['window_days']} days, {s['chairs']} chairs: p99",
            s["p99_ms"],
            "< 100 ms",
            s["p99_ms"] < 100,
            unit=" ms",
        ),
    ]


def main(quick: bool) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        cluster = PostgresCluster()
        cluster.start()
        try:
            figures = asyncio.run(measure(sizes, cluster, Path(tmp)))
        finally:
            cluster.stop()
            cluster.cleanup()
    server_version = cluster.bin_dir.parent.name if cluster.bin_dir else "?"
    return {
        "quick": quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "postgresql": server_version,
        **figures,
        "figures": headline(figures),
    }


def report(result: dict[str, Any]) -> None:
    for name in ("maintenance", "mood_induction"):
        t = result["throughput"][name]
        print(
            f"{name} at {t['concurrency']} clients: ours {t['ours_per_second']}/s "
            f"p50 {t['ours_p50_ms']} ms p99 {t['ours_p99_ms']} ms | bare insert "
            f"{t['bare_per_second']}/s p50 {t['bare_p50_ms']} ms p99 {t['bare_p99_ms']} ms"
        )
        print(
            f"  ratio (median of {len(t['pairs'])} pairs): throughput "
            f"{t['throughput_ratio']:.2f}x (target >= 0.30x)   p99 {t['p99_ratio']:.2f}x "
            "(target <= 2x)"
        )
        print(
            f"  CPU ms per request: ours {t['ours_cpu_ms_per_request']} | bare "
            f"{t['bare_cpu_ms_per_request']}"
        )
    t = result["throughput"]["maintenance_one_at_a_time"]
    print(
        f"maintenance one at a time: ours p50 {t['ours_p50_ms']} ms p99 {t['ours_p99_ms']} ms | "
        f"bare insert p50 {t['bare_p50_ms']} ms p99 {t['bare_p99_ms']} ms | p99 ratio "
        f"{t['p99_ratio']:.2f}x"
    )
    b = result["bursts"]
    print(
        f"bursts: {b['bursts']} x {b['contenders']} on one slot: exactly one winner in "
        f"{b['ours_exactly_one_winner']}/{b['bursts']} (bare {b['bare_exactly_one_winner']}), "
        f"statuses {b['ours_statuses']}, 5xx {b['ours_5xx']}, stored {b['appointments_stored']}"
    )
    print(
        f"  ours p50 {b['ours_p50_ms']} ms p99 {b['ours_p99_ms']} ms max {b['ours_max_ms']} ms "
        f"(over 1 s: {b['ours_over_1s']}) | bare locked p50 {b['bare_p50_ms']} ms p99 "
        f"{b['bare_p99_ms']} ms max {b['bare_max_ms']} ms | p99 ratio {b['p99_ratio']:.2f}x "
        "(target <= 3x)"
    )
    s = result["search"]
    print(
        f"availability: mood_induction, {s['chairs']} chairs, {s['window_days']} days, "
        f"{s['booked_share']:.0%} booked ({s['appointments']} appointments over "
        f"{s['calendar_days']} days), "
        f"{s['searches']} searches: p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms "
        f"max {s['max_ms']} ms (target p99 < 100 ms), {s['options_returned']} options"
    )
    busy = [
        result["throughput"][name]["max_other_processes_cores"]
        for name in ("maintenance", "mood_induction", "maintenance_one_at_a_time")
    ] + [b["other_processes_cores"], s["other_processes_cores"]]
    if max(busy) > 0.1:
        print(
            f"WARNING: other processes used up to {max(busy):.2f} cores during a measurement; "
            "these figures are not from a quiet machine"
        )
    print("headline figures (median of the pairs' ratios):")
    print_figures(result["figures"])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and requests")
    result = main(parser.parse_args().quick)
    path = write_results("booking", result)
    report(result)
    print(f"written to {path}")

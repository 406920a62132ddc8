"""Reminder dispatch: notify's dispatcher sending due reminders, beside a bare claim-and-mark loop.

ours: `python -m notify dispatcher` (its `Deliveries` due-queue: claim with `FOR UPDATE SKIP
LOCKED`, ask booking's internal API for the contact details, render the text, write the send
ledger and commit, hand the text to the SMS sink, record the outcome with its
`notify.message.sent.v1` outbox row) runs against PostgreSQL, with booking's API
(`python -m booking api`) answering the contact look-ups and notify's file sink for texts
(`NOTIFY_OUTBOX_DIR/sms.jsonl`). For each run N reminders fall due at once: rows written
straight into notify's `message` table as notify's scheduling writes them (fasting, ride-home
and medication-hold texts for infusions three days ahead, one patient each, registered in
booking's tables). The rate is N over the time from the first claim to the last message marked
sent (the messages' own `claimed_at` and `sent_at`), so the dispatcher's idle poll before the
first claim is not counted.

bare: one asyncpg connection claiming the earliest due row (`FOR UPDATE SKIP LOCKED`, the
same query shape) and marking it sent, one transaction per row, until none is due, on
`bare_message`, a table made from notify's (`CREATE TABLE ... (LIKE message INCLUDING ALL)`:
the same columns, constraints and indexes), holding the same rows. No composing, no sending.

Runs alternate (ours, bare, ...) after a warm-up of each; the figure is the median of the
pairs' ratios. The policy turns the clinic's quiet hours off (start = end) so that the
benchmark runs at any hour; the dispatcher still checks them for every message.

Prints the figures and writes bench/results/reminders.json.

    uv run python bench/reminders.py [--quick] [--messages N] [--pairs N]
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from _common import (
    ROOT,
    OtherLoad,
    describe_machine,
    figure,
    postgres_cpu,
    postmaster_pid,
    print_figures,
    process_cpu,
    warn_if_busy,
    write_results,
)
from _system import System, build_system

from clinic_local.postgres import PostgresCluster, to_raw_dsn

SECRET = "bench-secret-" + uuid.uuid4().hex
ZONE = ZoneInfo("America/Los_Angeles")  # the default policy's clinic zone
TARGET = 0.5
WARMUP = 50
# (kind, step) of the reminders an infusion gets by text, as notify's scheduling plans them.
REMINDERS = (
    ("fasting", "evening_before"),
    ("ride_home", "24h_before"),
    ("medication_hold", "benzodiazepine"),
)
MESSAGE_COLUMNS = (
    "id, patient_id, kind, step, channel, dedupe_key, subject_id, facts, planned_at, due_at, "
    "send_by, status, attempts, created_at, updated_at"
)
CLAIM = (
    "SELECT id FROM bare_message WHERE status = 'scheduled' AND due_at <= $1 "
    "ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)
MARK_SENT = (
    "UPDATE bare_message SET status = 'sent', sent_at = $2, updated_at = $2, "
    "attempts = attempts + 1 WHERE id = $1"
)


@dataclass(frozen=True)
class Sizes:
    messages: int
    pairs: int


FULL = Sizes(messages=1000, pairs=5)
QUICK = Sizes(messages=300, pairs=3)


@dataclass
class Run:
    messages: int
    seconds: float
    wall_seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "per_second": round(self.rate, 1),
            "cpu_ms_per_message": {
                k: round(v * 1000 / self.messages, 3) for k, v in self.cpu.items()
            },
        }


# --------------------------------------------------------------------------- set-up


async def add_patients(booking_url: str, count: int) -> list[uuid.UUID]:
    """Patients written straight into booking's table (what POST /v1/patients writes), so that
    its internal API finds their contact details: set-up, not measured."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(to_raw_dsn(booking_url))
    try:
        await conn.executemany(
            "INSERT INTO patient (id, first_name, last_name, date_of_birth, email, phone, "
            "registered_at, registered_by) VALUES ($1, 'Bench', $2, $3, $4, '+15035550123', "
            "$5, 'staff')",
            [
                (
                    pid,
                    f"Patient {pid.hex[:6]}",
                    date(1980, 1, 1),
                    f"p{pid.hex[:12]}@example.org",
                    now,
                )
                for pid in ids
            ],
        )
    finally:
        await conn.close()
    return ids


def due_reminders(patients: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """One due text reminder per patient, for an infusion three days ahead at 10:00."""
    now = datetime.now(UTC)
    start = datetime.combine(
        datetime.now(ZONE).date() + timedelta(days=3), datetime.min.time(), tzinfo=ZONE
    ) + timedelta(hours=10)
    rows = []
    for index, patient in enumerate(patients):
        kind, step = REMINDERS[index % len(REMINDERS)]
        appointment, course = uuid.uuid4(), uuid.uuid4()
        facts = {
            "appointment_id": str(appointment),
            "course_id": str(course),
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=90)).isoformat(),
            "pickup_inside": False,
        }
        rows.append(
            (
                uuid.uuid4(),
                patient,
                kind,
                step,
                "sms",
                f"{kind}:{appointment}:r0:{step}:sms",
                appointment,
                json.dumps(facts),
                now - timedelta(minutes=1),
                now - timedelta(minutes=1),
                start,
                "scheduled",
                0,
                now,
                now,
            )
        )
    return rows


async def insert_rows(conn: asyncpg.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    placeholders = ", ".join(f"${n}" for n in range(1, 16))
    await conn.executemany(
        f"INSERT INTO {table} ({MESSAGE_COLUMNS}) VALUES ({placeholders})",
        rows,
    )


# --------------------------------------------------------------------------- ours and bare


async def ours_run(
    conn: asyncpg.Connection,
    rows: list[tuple[Any, ...]],
    system: System,
    postmaster: int,
) -> Run:
    """Make the rows due and wait until the running dispatcher has sent them all."""
    ids = [row[0] for row in rows]
    pids = system.pids()
    before = {name: process_cpu(pids[name]) for name in ("notify-dispatcher", "booking-api")}
    postgres_before = postgres_cpu(postmaster)
    started = time.perf_counter()
    await insert_rows(conn, "message", rows)
    deadline = started + max(60.0, len(rows) / 5)
    while True:
        await asyncio.sleep(0.1)
        system.check_alive()
        pending = await conn.fetchval(
            "SELECT count(*) FROM message WHERE id = ANY($1::uuid[]) AND status <> 'sent'", ids
        )
        if pending == 0:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{pending} of {len(rows)} reminders not sent in time")
    wall = time.perf_counter() - started
    cpu = {
        "dispatcher": process_cpu(pids["notify-dispatcher"]) - before["notify-dispatcher"],
        "booking_api": process_cpu(pids["booking-api"]) - before["booking-api"],
        "postgres": postgres_cpu(postmaster) - postgres_before,
    }
    first, last = await conn.fetchrow(
        "SELECT min(claimed_at), max(sent_at) FROM message WHERE id = ANY($1::uuid[])", ids
    )
    accepted = await conn.fetchval(
        "SELECT count(*) FROM delivery WHERE message_id = ANY($1::uuid[]) AND outcome = 'accepted'",
        ids,
    )
    if accepted != len(rows):
        raise RuntimeError(f"{accepted} of {len(rows)} reminders accepted by the sink")
    return Run(len(rows), (last - first).total_seconds(), wall, cpu)


async def bare_run(conn: asyncpg.Connection, rows: list[tuple[Any, ...]], postmaster: int) -> Run:
    """Claim the earliest due row and mark it sent, one transaction each, until none is due."""
    await insert_rows(conn, "bare_message", rows)
    postgres_before, client_before = postgres_cpu(postmaster), time.process_time()
    started = time.perf_counter()
    sent = 0
    while True:
        async with conn.transaction():
            claimed = await conn.fetchval(CLAIM, datetime.now(UTC))
            if claimed is None:
                break
            await conn.execute(MARK_SENT, claimed, datetime.now(UTC))
        sent += 1
    elapsed = time.perf_counter() - started
    cpu = {
        "client": time.process_time() - client_before,
        "postgres": postgres_cpu(postmaster) - postgres_before,
    }
    if sent != len(rows):
        raise RuntimeError(f"the bare loop marked {sent} of {len(rows)} rows")
    return Run(sent, elapsed, elapsed, cpu)


# --------------------------------------------------------------------------- main


async def measure(sizes: Sizes, tmp: Path) -> dict[str, Any]:
    log_dir = tmp / "logs"
    log_dir.mkdir()
    cluster = PostgresCluster()
    cluster.start()
    try:
        return await measure_on(sizes, cluster, tmp, log_dir)
    finally:
        cluster.stop()
        cluster.cleanup()


async def measure_on(
    sizes: Sizes, cluster: PostgresCluster, tmp: Path, log_dir: Path
) -> dict[str, Any]:
    policy = tmp / "policy.yaml"
    policy.write_text('notify: {quiet_hours: {start: "00:00", end: "00:00"}}\n')
    system = await build_system(
        cluster,
        "127.0.0.1:9",  # neither process uses Kafka: the relays are not running
        log_dir,
        name="reminders",
        services=("booking", "notify"),
        secret=SECRET,
        policy=policy,
    )
    patients = await add_patients(system.database_urls["booking"], sizes.messages)
    conn = await asyncpg.connect(to_raw_dsn(system.database_urls["notify"]))
    postmaster = postmaster_pid(cluster.data_dir)
    load = OtherLoad(postmaster)
    ours: list[Run] = []
    bare: list[Run] = []
    try:
        await conn.execute("CREATE TABLE bare_message (LIKE message INCLUDING ALL)")
        system.start("booking", "api")
        system.start("notify", "dispatcher")
        await system.wait_ready()
        # Warm-up, not counted: connections, templates, the HTTP client to booking.
        await ours_run(conn, due_reminders(patients[:WARMUP]), system, postmaster)
        await bare_run(conn, due_reminders(patients[:WARMUP]), postmaster)
        load.start()
        for pair in range(sizes.pairs):
            ours.append(await ours_run(conn, due_reminders(patients), system, postmaster))
            bare.append(await bare_run(conn, due_reminders(patients), postmaster))
            print(
                f"  pair {pair + 1}: ours {ours[-1].rate:7.1f} messages/s | bare "
                f"{bare[-1].rate:7.1f} rows/s | ratio {ours[-1].rate / bare[-1].rate:.3f}x",
                flush=True,
            )
        other_cores = load.cores()
    finally:
        await conn.close()
        system.stop_all()
    sms_lines = (log_dir / "notify-outbox" / "sms.jsonl").read_text().count("\n")
    return {
        "messages": sizes.messages,
        "channel": "sms, to notify's file sink",
        "kinds": [f"{kind}/{step}" for kind, step in REMINDERS],
        "texts_written": sms_lines,
        "pairs": [
            {"ours": o.summary(), "bare": b.summary(), "ratio": round(o.rate / b.rate, 4)}
            for o, b in zip(ours, bare, strict=True)
        ],
        "other_processes_cores": other_cores,
        "figures": [
            figure(
                f"reminder dispatch, {sizes.messages:,} due: messages/s against bare "
                "claim-and-mark rows/s",
                "/s",
                [run.rate for run in ours],
                [run.rate for run in bare],
                at_least=TARGET,
            )
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 messages, 3 pairs")
    parser.add_argument("--messages", type=int, help="due reminders per run (1,000)")
    parser.add_argument("--pairs", type=int, help="alternated pairs (5)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(messages=args.messages or sizes.messages, pairs=args.pairs or sizes.pairs)
    os.chdir(ROOT)  # `python -m booking` must find the service, not bench/booking.py
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(sizes, Path(tmp)))
    result = {"quick": args.quick, "machine": describe_machine(), **result}
    path = write_results("reminders", result)
    print(f"{sizes.messages:,} due text reminders per run, {result['texts_written']:,} written:")
    for pair in result["pairs"]:
        print(
            f"  ours {pair['ours']['per_second']}/s, CPU ms per message "
            f"{pair['ours']['cpu_ms_per_message']} | bare {pair['bare']['per_second']}/s, "
            f"CPU ms per row {pair['bare']['cpu_ms_per_message']}"
        )
    print_figures(result["figures"])
    warn_if_busy(result["other_processes_cores"])
    print(f"written to {path}")


if __name__ == "__main__":
    main()

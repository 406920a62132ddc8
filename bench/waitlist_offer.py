"""Cancellation answered to offer readable in the waitlist API, beside a bare two-hop relay.

ours: booking (api, relay, consumer) and waitlist (api, relay, consumer, dispatcher) run as
their real entrypoints (`python -m <service> ...`) on PostgreSQL, one database each, migrated
by `python -m <service> migrate`, and a local Kafka broker. For every run a cleared patient A
has booked a `mood_induction` course starting a few days ahead (the first option the
availability search gives) and a cleared patient B, nobody else, has just been put on the
waitlist for a `mood_induction`. Then A's first appointment is cancelled, which releases the
rest of the series to the waitlist. Timed from the moment the cancellation's 200 answer is
received until `GET /v1/offers?patient_id=B` lists an open offer of that block; the poller
asks again 2 ms after each answer (`--poll-ms`).

bare: a record produced to topic A, relayed by a separate process (consume A, produce to B,
commit) and read back from topic B by this process: two hops on the same broker with the same
client settings as the services (bench/_bare_relay.py).

Runs alternate (ours, bare, ours, ...) after warm-up runs that are not counted. Before each
ours run the system is let settle: both outboxes published, both consumer groups caught up.
Prints p50 and p99 of each, their ratios against the target (<= 3x), where ours spends its
time (from the services' own timestamps) and writes bench/results/waitlist_offer.json.

    uv run python bench/waitlist_offer.py [--runs 100] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from _bare_relay import BareRelay
from _common import (
    ROOT,
    OtherLoad,
    check,
    figure,
    latency_pairs,
    ms,
    p50,
    p99,
    percentile,
    postmaster_pid,
    print_figures,
    write_results,
)
from _system import System, build_system
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clinic_local.kafka import DEFAULT_KAFKA_VERSION, KafkaBroker
from clinic_local.postgres import PostgresCluster, to_raw_dsn
from clinic_shared.auth import Role, issue_token
from clinic_shared.contracts.registry import topic_for
from clinic_shared.kafka import make_consumer

SECRET = "bench-secret-" + uuid.uuid4().hex
ZONE = ZoneInfo("America/Los_Angeles")
CHAIRS = 64
TARGET = 3.0
BLOCK_RELEASED = "booking.block.released.v1"
# Where a run's time goes, from the services' own timestamps: the cancellation's outbox rows
# written (`occurred_at`), its answer received here, the relay's first lane and the block's
# lane marked sent (after the broker's acknowledgement), the waitlist consumer's inbox row, the
# offer's `made_at`, the offer read here.
STAGES = (
    "outbox_written_to_answered",
    "answered_to_first_lane_published",
    "answered_to_block_published",
    "answered_to_waitlist_inbox",
    "waitlist_inbox_to_offer",
    "offer_to_seen",
    "waitlist_inbox_to_seen",
)
COUNTS = ("cancel_outbox_rows", "cancel_outbox_lanes", "lanes_published_before_block")
SCREENING_CLEAR = {
    flag: False
    for flag in (
        "psychosis",
        "seizure_disorder",
        "aminophylline_use",
        "uncontrolled_hypertension",
        "unstable_cardiopulmonary_disease",
    )
}
# Consumer group -> the topic it reads (each service's group is its name).
GROUPS = {"waitlist": topic_for("booking"), "booking": topic_for("waitlist")}


def spread(seconds: Sequence[float]) -> dict[str, float | int]:
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": ms(statistics.median(seconds)),
        "p99_ms": ms(percentile(seconds, 0.99)),
        "min_ms": ms(min(seconds)),
        "max_ms": ms(max(seconds)),
    }


@dataclass(frozen=True)
class Options:
    runs: int
    warmup: int
    poll_gap: float
    """Pause after each poll's answer."""
    timeout: float
    """Seconds to wait for B's offer; a run without it counts as a failure."""
    pairs: int
    """Blocks of consecutive alternated runs whose ratios give the headline figures."""
    poll_delay: float = 0.0
    """A diagnostic: the first poll this long after the cancellation."""


# --------------------------------------------------------------------------- the system


async def start_system(
    cluster: PostgresCluster, bootstrap: str, tmp: Path, log_dir: Path
) -> System:
    policy = tmp / "policy.yaml"
    policy.write_text(f"booking: {{chairs: {CHAIRS}}}\n")
    return await build_system(
        cluster,
        bootstrap,
        log_dir,
        name="offer",
        services=("booking", "waitlist"),
        secret=SECRET,
        policy=policy,
    )


# --------------------------------------------------------------------------- settling


class Quiet:
    """Waits until nothing is in flight: both outboxes published, both groups caught up."""

    def __init__(self, system: System, bootstrap: str) -> None:
        self._system = system
        self._bootstrap = bootstrap
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-quiet")
        # Reads end offsets only; it never subscribes, so its group never joins.
        self._offsets = make_consumer(bootstrap, f"bench-quiet-{uuid.uuid4().hex[:8]}")
        self.db: dict[str, asyncpg.Connection] = {}
        self._started = False

    async def start(self) -> None:
        await self._admin.start()
        self._started = True
        await self._offsets.start()
        for service, url in self._system.database_urls.items():
            self.db[service] = await asyncpg.connect(to_raw_dsn(url))

    async def stop(self) -> None:
        for conn in self.db.values():
            await conn.close()
        if self._started:
            await self._offsets.stop()
            await self._admin.close()

    async def _unsent(self) -> int:
        total = 0
        for conn in self.db.values():
            total += await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return total

    async def _lag(self) -> int:
        lag = 0
        for group, topic in GROUPS.items():
            committed = await self._admin.list_consumer_group_offsets(group)
            partitions = self._offsets.partitions_for_topic(topic)
            if partitions is None:
                await self._offsets.topics()  # fetches the cluster's metadata
                partitions = self._offsets.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await self._offsets.end_offsets(tps) if tps else {}
            for tp, end in ends.items():
                done = committed.get(tp)
                lag += end - (done.offset if done is not None and done.offset >= 0 else 0)
        return lag

    async def settle(self, timeout: float = 30.0, pause: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._system.check_alive()
            if await self._unsent() == 0 and await self._lag() == 0:
                await asyncio.sleep(pause)  # anything a consumed event started, let it end
                if await self._unsent() == 0 and await self._lag() == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the services did not settle within {timeout} s")
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- set-up over HTTP


def headers(role: Role, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, role, subject)}"}


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{what}: {response.status_code} {response.text[:500]}")
    return response.json()


async def cleared_patient(client: httpx.AsyncClient, booking: str) -> str:
    """Registered, mood intake submitted and cleared: as tests/e2e/test_series_release.py."""
    created = expect(
        await client.post(
            f"{booking}/v1/patients",
            json={
                "first_name": "Bench",
                "last_name": "Offer",
                "date_of_birth": "1990-02-02",
                "email": f"b{uuid.uuid4().hex[:10]}@example.org",
                "phone": "+15035550177",
            },
            headers=headers(Role.SCHEDULER),
        ),
        201,
        "register",
    )
    patient_id = str(created["id"])
    expect(
        await client.put(
            f"{booking}/v1/patients/{patient_id}/intake",
            json={"condition": "mood", "screening": SCREENING_CLEAR},
            headers=headers(Role.PATIENT, patient_id),
        ),
        200,
        "intake",
    )
    expect(
        await client.post(
            f"{booking}/v1/patients/{patient_id}/intake/clearance",
            json={"diagnosis_confirmed": True},
            headers=headers(Role.CLINICIAN, "dr-bench"),
        ),
        200,
        "clearance",
    )
    return patient_id


@dataclass
class Case:
    """One ours run: A's course (booked), B (cleared, not yet on the waitlist)."""

    a: str
    b: str
    first_appointment: str
    first_day: date


async def prepare(client: httpx.AsyncClient, booking: str, count: int) -> list[Case]:
    """Patients and A's courses for `count` runs, booked one after another: each course takes
    the first option the availability search gives (a free chair at the earliest times)."""
    semaphore = asyncio.Semaphore(4)

    async def one() -> str:
        async with semaphore:
            return await cleared_patient(client, booking)

    patients = await asyncio.gather(*(one() for _ in range(2 * count)))
    window_from = datetime.combine(
        datetime.now(ZONE).date() + timedelta(days=3), datetime.min.time(), tzinfo=ZONE
    )
    cases = []
    for index in range(count):
        a, b = patients[2 * index], patients[2 * index + 1]
        options = expect(
            await client.get(
                f"{booking}/v1/availability",
                params={
                    "protocol": "mood_induction",
                    "patient_id": a,
                    "from": window_from.isoformat(),
                    "to": (window_from + timedelta(days=28)).isoformat(),
                    "limit": 1,
                },
                headers=headers(Role.SCHEDULER),
            ),
            200,
            "availability",
        )["options"]
        if not options:
            raise RuntimeError("availability: no mood_induction option left")
        slots = options[0]["slots"]
        course = expect(
            await client.post(
                f"{booking}/v1/courses",
                json={
                    "patient_id": a,
                    "protocol": "mood_induction",
                    "slots": [{"start": s["start"], "chair_id": s["chair_id"]} for s in slots],
                },
                headers=headers(Role.SCHEDULER),
            ),
            201,
            "course",
        )
        first = min(course["appointments"], key=lambda appointment: appointment["start"])
        first_day = datetime.fromisoformat(first["start"]).astimezone(ZONE).date()
        cases.append(Case(a, b, str(first["id"]), first_day))
    return cases


# --------------------------------------------------------------------------- ours


@dataclass
class OursRun:
    seconds: float | None
    """None: no open offer for B within the timeout."""
    polls: int
    poll_seconds: list[float]
    answered_wall: float
    seen_wall: float | None
    hold_id: str
    offer: dict[str, Any] | None
    stages: dict[str, float] = field(default_factory=dict)


def offer_of_hold(offers: list[dict[str, Any]], hold_id: str, held: set[str]) -> dict | None:
    """The open offer of this run's block (by hold id, else by the held appointments)."""
    for offer in offers:
        if offer.get("status") != "open":
            continue
        if "hold_id" in offer:
            if str(offer["hold_id"]) == hold_id:
                return offer
            continue
        ids = {str(s.get("appointment_id") or s.get("id")) for s in offer.get("slots", [])}
        if not held or ids & held:
            return offer
    return None


async def one_ours(
    booking: httpx.AsyncClient,
    waitlist: httpx.AsyncClient,
    case: Case,
    quiet: Quiet,
    options: Options,
) -> OursRun:
    """B joins the waitlist, everything settles, A cancels: timed until B's offer is read.

    Afterwards (not timed) B's entry is removed again, so that every run meets a waitlist with
    one entry: the offer is withdrawn and the block moves on (split, unclaimed, opened in
    booking), which the next run's settling waits for.
    """
    scheduler = headers(Role.SCHEDULER)
    entry = expect(
        await waitlist.post(
            "/v1/entries",
            json={
                "patient_id": case.b,
                "protocol": "mood_induction",
                "earliest_start": case.first_day.isoformat(),
                "preferences": {"weekdays": [], "windows": []},
                "priority": "routine",
            },
            headers=scheduler,
        ),
        201,
        "waitlist entry",
    )
    b_headers = headers(Role.PATIENT, case.b)
    params = {"patient_id": case.b}
    await quiet.settle()

    cancelled = await booking.post(
        f"/v1/appointments/{case.first_appointment}/cancel",
        json={"reason": "bench", "acknowledge_late_fee": True},
        headers=headers(Role.PATIENT, case.a),
    )
    started = time.perf_counter()
    answered_wall = time.time()
    body = expect(cancelled, 200, "cancel")
    hold_id = str(body["hold_id"])
    held = {str(i) for i in body.get("held_appointment_ids", [])}
    if options.poll_delay:
        await asyncio.sleep(options.poll_delay)  # a diagnostic: the pipeline without the poller

    polls, poll_seconds = 0, []
    deadline = started + options.timeout
    while True:
        asked = time.perf_counter()
        response = await waitlist.get("/v1/offers", params=params, headers=b_headers)
        now = time.perf_counter()
        polls += 1
        poll_seconds.append(now - asked)
        offers = expect(response, 200, "offers")["offers"]
        offer = offer_of_hold(offers, hold_id, held)
        if offer is not None:
            run = OursRun(
                now - started, polls, poll_seconds, answered_wall, time.time(), hold_id, offer
            )
            break
        if now > deadline:
            run = OursRun(None, polls, poll_seconds, answered_wall, None, hold_id, None)
            break
        await asyncio.sleep(options.poll_gap)

    await quiet.settle()  # the cancellation's other lanes may still be on their way
    run.stages = await stages(quiet, run)
    removed = await waitlist.delete(f"/v1/entries/{entry['id']}", headers=scheduler)
    if removed.status_code != 204:
        raise RuntimeError(f"removing B's entry: {removed.status_code} {removed.text[:300]}")
    return run


async def stages(quiet: Quiet, run: OursRun) -> dict[str, float]:
    """Where one run's time went, from the services' own clocks (same machine)."""
    booking, waitlist = quiet.db["booking"], quiet.db["waitlist"]
    row = await booking.fetchrow(
        "SELECT event_id, occurred_at, sent_at, lane, correlation_id FROM outbox "
        "WHERE event_type = $1 AND payload::jsonb ->> 'hold_id' = $2",
        BLOCK_RELEASED,
        run.hold_id,
    )
    if row is None or run.seen_wall is None:
        return {}
    # The cancellation's other outbox rows (same request): lanes the relay published first.
    siblings = await booking.fetch(
        "SELECT lane, min(sent_at) AS sent_at, count(*) AS n FROM outbox "
        "WHERE correlation_id = $1 GROUP BY lane ORDER BY lane",
        row["correlation_id"],
    )
    figures = {
        "cancel_outbox_rows": float(sum(r["n"] for r in siblings)),
        "cancel_outbox_lanes": float(len(siblings)),
        "lanes_published_before_block": float(sum(1 for r in siblings if r["lane"] < row["lane"])),
        "outbox_written_to_answered": run.answered_wall - row["occurred_at"].timestamp(),
        "answered_to_first_lane_published": min(r["sent_at"] for r in siblings).timestamp()
        - run.answered_wall,
        "answered_to_block_published": row["sent_at"].timestamp() - run.answered_wall,
    }
    received = await waitlist.fetchval(
        "SELECT received_at FROM inbox WHERE event_id = $1", row["event_id"]
    )
    if received is not None:
        figures["answered_to_waitlist_inbox"] = received.timestamp() - run.answered_wall
        figures["waitlist_inbox_to_seen"] = run.seen_wall - received.timestamp()
        made = offer_time(run.offer or {})
        if made is not None:
            figures["waitlist_inbox_to_offer"] = made - received.timestamp()
            figures["offer_to_seen"] = run.seen_wall - made
    return figures


def offer_time(offer: dict[str, Any]) -> float | None:
    made = offer.get("made_at")
    return datetime.fromisoformat(str(made)).timestamp() if made else None


async def idle_gets(waitlist: httpx.AsyncClient, patient_id: str, count: int = 100) -> list[float]:
    """GET /v1/offers one after another with nothing else going on: what one poll costs."""
    b_headers = headers(Role.PATIENT, patient_id)
    seconds = []
    for _ in range(count):
        asked = time.perf_counter()
        expect(
            await waitlist.get("/v1/offers", params={"patient_id": patient_id}, headers=b_headers),
            200,
            "offers",
        )
        seconds.append(time.perf_counter() - asked)
    return seconds


# --------------------------------------------------------------------------- main


async def measure(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log_dir = tmp / "logs"
        log_dir.mkdir()
        broker = KafkaBroker(tmp / "kafka")
        broker.start()
        cluster = PostgresCluster()
        cluster.start()
        try:
            result = await run_all(cluster, broker.bootstrap_servers, tmp, log_dir, options)
        finally:
            cluster.stop()
            cluster.cleanup()
            broker.stop()
    result["postgresql"] = cluster.bin_dir.parent.name if cluster.bin_dir else "?"
    return result


async def run_all(
    cluster: PostgresCluster, bootstrap: str, tmp: Path, log_dir: Path, options: Options
) -> dict[str, Any]:
    system = await start_system(cluster, bootstrap, tmp, log_dir)
    bare = BareRelay(bootstrap, log_dir)
    quiet = Quiet(system, bootstrap)
    try:
        for command in ("api", "relay", "consumer"):
            system.start("booking", command)
        for command in ("api", "relay", "consumer", "dispatcher"):
            system.start("waitlist", command)
        await system.wait_ready()
        await bare.start()
        await quiet.start()
        async with (
            httpx.AsyncClient(base_url=system.urls["booking"], timeout=30) as booking,
            httpx.AsyncClient(base_url=system.urls["waitlist"], timeout=30) as waitlist,
        ):
            total = options.runs + options.warmup
            print(f"preparing {total} courses and {2 * total} patients", flush=True)
            cases = await prepare(booking, system.urls["booking"], total)
            ours: list[OursRun] = []
            bare_seconds: list[float] = []
            load = OtherLoad(postmaster_pid(cluster.data_dir))
            for index, case in enumerate(cases):
                if index == options.warmup:
                    load.start()
                run = await one_ours(booking, waitlist, case, quiet, options)
                await quiet.settle()  # B's removal moves the block on: not during the bare run
                reference = await bare.one()
                if index < options.warmup:
                    continue
                ours.append(run)
                bare_seconds.append(reference)
                done = index - options.warmup + 1
                if done % 10 == 0 or done == options.runs:
                    last = "timeout" if run.seconds is None else f"{ms(run.seconds)} ms"
                    print(
                        f"  {done}/{options.runs}: ours {last}, bare {ms(reference)} ms",
                        flush=True,
                    )
            other_cores = load.cores()
            idle = await idle_gets(waitlist, cases[-1].b)
        result = report(ours, bare_seconds, options)
        result["offers_get_idle"] = spread(idle)
        result["other_processes_cores"] = other_cores
        return result
    finally:
        await quiet.stop()
        await bare.stop()
        system.stop_all()


def report(ours: list[OursRun], bare: list[float], options: Options) -> dict[str, Any]:
    found = [run.seconds for run in ours if run.seconds is not None]
    failures = len(ours) - len(found)
    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "kafka": DEFAULT_KAFKA_VERSION,
        "runs": options.runs,
        "warmup_runs": options.warmup,
        "poll_gap_ms": ms(options.poll_gap),
        "ours": {**spread(found), "failures": failures},
        "bare": spread(bare),
        "target_ratio": TARGET,
    }
    if found:
        p50_ratio = figures["ours"]["p50_ms"] / figures["bare"]["p50_ms"]
        p99_ratio = figures["ours"]["p99_ms"] / figures["bare"]["p99_ms"]
        figures["p50_ratio"], figures["p99_ratio"] = round(p50_ratio, 2), round(p99_ratio, 2)
        figures["target_met"] = p50_ratio <= TARGET and p99_ratio <= TARGET and failures == 0
    else:
        figures["target_met"] = False
    # The headline figures: blocks of consecutive alternated runs, a ratio per block, the
    # median of the blocks. A run without an offer in time leaves its pair out (and fails the
    # check below).
    answered = [(run.seconds, b) for run, b in zip(ours, bare, strict=True) if run.seconds]
    ours_ms, bare_ms = [o * 1000 for o, _ in answered], [b * 1000 for _, b in answered]
    figures["figures"] = [
        *(
            figure(
                f"cancellation answered to offer readable, {name}",
                " ms",
                *latency_pairs(ours_ms, bare_ms, options.pairs, statistic),
                at_most=TARGET,
            )
            for name, statistic in (("p50", p50), ("p99", p99))
            if answered
        ),
        check(
            f"offers readable within {options.timeout:g} s",
            f"{len(found)}/{len(ours)}",
            "all",
            failures == 0,
        ),
    ]
    polls = [run.polls for run in ours]
    figures["polls_per_run_p50"] = statistics.median(polls) if polls else 0
    figures["offers_get"] = spread([s for run in ours for s in run.poll_seconds])
    if options.poll_delay:
        figures["diagnostic_poll_delay_ms"] = ms(options.poll_delay)
    stage_rows = [run.stages for run in ours if run.stages]
    figures["ours_stages"] = {
        name: spread([row[name] for row in stage_rows if name in row]) for name in STAGES
    }
    figures["cancel_outbox"] = {
        name: {
            "median": statistics.median(row[name] for row in stage_rows),
            "max": max(row[name] for row in stage_rows),
        }
        for name in COUNTS
        if stage_rows
    }
    # The relay publishes lanes one after another: a block whose lane comes after the course's
    # lane waits for that lane's publish too.
    figures["ours_by_block_lane"] = {
        label: spread(
            [
                run.seconds
                for run in ours
                if run.seconds is not None
                and run.stages
                and (run.stages["lanes_published_before_block"] > 0) == later
            ]
        )
        for label, later in (("block_lane_first", False), ("block_lane_second", True))
    }
    figures["ours_runs"] = [
        {
            "ms": ms(run.seconds) if run.seconds is not None else None,
            "polls": run.polls,
            **{name: value if name in COUNTS else ms(value) for name, value in run.stages.items()},
        }
        for run in ours
    ]
    figures["bare_ms"] = [ms(seconds) for seconds in bare]
    return figures


def print_report(result: dict[str, Any]) -> None:
    ours, bare = result["ours"], result["bare"]
    print(
        f"ours: cancel answered -> offer readable: p50 {ours.get('p50_ms')} ms "
        f"p99 {ours.get('p99_ms')} ms max {ours.get('max_ms')} ms "
        f"({ours['count']} runs, {ours['failures']} without an offer in time)"
    )
    print(
        f"bare: two-hop relay through a separate process: p50 {bare['p50_ms']} ms "
        f"p99 {bare['p99_ms']} ms max {bare['max_ms']} ms"
    )
    if "p50_ratio" in result:
        verdict = "met" if result["target_met"] else "NOT met"
        print(
            f"ratio: p50 {result['p50_ratio']:.2f}x  p99 {result['p99_ratio']:.2f}x  "
            f"(target <= {TARGET:g}x: {verdict})"
        )
    print(f"headline figures ({len(result['ours_runs'])} runs in blocks, ratio per block):")
    print_figures(result["figures"])
    get, idle = result["offers_get"], result["offers_get_idle"]
    print(
        f"polling: GET /v1/offers p50 {get.get('p50_ms')} ms during the runs "
        f"({idle['p50_ms']} ms on an idle system), {result['poll_gap_ms']} ms between polls, "
        f"{result['polls_per_run_p50']} polls per run (median)"
    )
    if result["other_processes_cores"] > 0.1:
        print(
            f"WARNING: other processes used {result['other_processes_cores']:.2f} cores during "
            "the runs; these figures are not from a quiet machine"
        )
    print("where ours spends its time (the services' own timestamps):")
    for name, figures in result["ours_stages"].items():
        print(f"  {name}: p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms")
    for name, figures in result["cancel_outbox"].items():
        print(f"  {name}: median {figures['median']:g} max {figures['max']:g}")
    for name, figures in result["ours_by_block_lane"].items():
        print(
            f"  ours, {name}: {figures['count']} runs, p50 {figures.get('p50_ms')} ms "
            f"p99 {figures.get('p99_ms')} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="measured runs of each (100)")
    parser.add_argument("--quick", action="store_true", help="20 runs of each, 3 pairs")
    parser.add_argument("--pairs", type=int, help="blocks of runs for the ratios (5)")
    parser.add_argument("--warmup", type=int, default=3, help="runs of each not counted (3)")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="pause between polls (2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for B's offer")
    parser.add_argument(
        "--poll-delay-ms",
        type=float,
        default=0.0,
        help="a diagnostic: first poll this long after the cancellation (the stages then show "
        "the pipeline without the poller's load; ours itself is then not comparable)",
    )
    args = parser.parse_args()
    options = Options(
        runs=args.runs or (20 if args.quick else 100),
        warmup=args.warmup,
        poll_gap=args.poll_ms / 1000,
        timeout=args.timeout,
        pairs=args.pairs or (3 if args.quick else 5),
        poll_delay=args.poll_delay_ms / 1000,
    )
    os.chdir(ROOT)  # `python -m booking` must find the service, not bench/booking.py
    result = {"quick": args.quick} | asyncio.run(measure(options))
    path = write_results("waitlist_offer", result)
    print_report(result)
    print(f"written to {path}")

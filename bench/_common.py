"""What the benchmarks share: percentiles, figures as medians of per-pair ratios, CPU time read
from /proc, the machine's description and the results files.

Every benchmark alternates its own runs with bare reference runs (ours, bare, ours, ...). A
pair is one ours run and the bare run after it, or, for latency figures, a block of
consecutive alternated runs (a p99 needs many runs). The ratio is computed per pair and the
figure is the median of the pairs' ratios, so that a disturbance during one pair moves one
ratio, not the figure. Each benchmark lists its headline figures under `figures` in its JSON
(`figure`, `check`); `run_all.py` gathers them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from clinic_local.kafka import DEFAULT_KAFKA_VERSION
from clinic_local.postgres import PostgresLaunchError, find_pg_bin

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS_DIR = BENCH / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


# --------------------------------------------------------------------------- figures


MIN_PAIRS = 3
"""Fewer pairs than this make no median worth reporting."""


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def split_into_pairs(runs: Sequence[T], pairs: int) -> list[list[T]]:
    """Consecutive runs in `pairs` blocks of (nearly) equal size, in run order."""
    if pairs > len(runs):
        raise ValueError(f"{len(runs)} runs cannot make {pairs} pairs")
    size, extra = divmod(len(runs), pairs)
    blocks, start = [], 0
    for index in range(pairs):
        end = start + size + (1 if index < extra else 0)
        blocks.append(list(runs[start:end]))
        start = end
    return blocks


def latency_pairs(
    ours: Sequence[float], bare: Sequence[float], pairs: int, statistic: Callable[..., float]
) -> tuple[list[float], list[float]]:
    """Alternated single-run latencies grouped into `pairs` blocks: `statistic` of each side's
    runs in each block (the p99 of 20 ours runs against the p99 of the 20 bare runs between
    them)."""
    return (
        [statistic(block) for block in split_into_pairs(ours, pairs)],
        [statistic(block) for block in split_into_pairs(bare, pairs)],
    )


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 0.99)


def figure(
    name: str,
    unit: str,
    ours: Sequence[float],
    bare: Sequence[float],
    *,
    at_least: float | None = None,
    at_most: float | None = None,
) -> dict[str, Any]:
    """A headline figure from alternated pairs: ours and bare are the medians of each side,
    the ratio (ours / bare) the median of the pairs' ratios, checked against the target."""
    if len(ours) != len(bare) or len(ours) < MIN_PAIRS:
        raise ValueError(f"a figure needs as many ours as bare values, at least {MIN_PAIRS}")
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    ratio = statistics.median(ratios)
    if at_least is not None:
        target, met = f">= {at_least:g}x", ratio >= at_least
    elif at_most is not None:
        target, met = f"<= {at_most:g}x", ratio <= at_most
    else:
        target, met = None, None
    return {
        "name": name,
        "unit": unit,
        "ours": round(statistics.median(ours), 3),
        "bare": round(statistics.median(bare), 3),
        "ratio": round(ratio, 3),
        "pairs": len(ratios),
        "pair_ratios": [round(r, 3) for r in ratios],
        "target": target,
        "met": met,
    }


def check(name: str, value: Any, target: str, met: bool, unit: str = "") -> dict[str, Any]:
    """A headline figure with no bare reference: a count or an absolute bound."""
    return {
        "name": name,
        "unit": unit,
        "ours": value,
        "bare": None,
        "ratio": None,
        "pairs": None,
        "target": target,
        "met": met,
    }


def write_results(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def print_figures(figures: Sequence[dict[str, Any]]) -> None:
    for item in figures:
        verdict = {True: "met", False: "NOT met", None: ""}[item["met"]]
        if item["ratio"] is None:
            print(f"  {item['name']}: {item['ours']}{item['unit']} ({item['target']}: {verdict})")
            continue
        target = f" (target {item['target']}: {verdict})" if item["target"] else ""
        print(
            f"  {item['name']}: ours {item['ours']:g}{item['unit']}, bare {item['bare']:g}"
            f"{item['unit']}, ratio {item['ratio']:.2f}x (median of {item['pairs']} pairs: "
            f"{', '.join(f'{r:.2f}' for r in item['pair_ratios'])}){target}"
        )


# --------------------------------------------------------------------------- the machine


def postgres_version() -> str:
    """The server's full version (`postgres --version`: "postgres (PostgreSQL) 15.18 ...")."""
    try:
        binaries = find_pg_bin(install=False)
    except PostgresLaunchError:
        return "?"
    answer = subprocess.run(
        [binaries / "postgres", "--version"], capture_output=True, text=True, check=False
    )
    words = answer.stdout.split()
    return words[2] if answer.returncode == 0 and len(words) > 2 else binaries.parent.name


def describe_machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or platform.machine(),
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "arch": platform.machine(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "kafka": DEFAULT_KAFKA_VERSION,
        "postgresql": postgres_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- CPU from /proc


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(fields: list[str], *, reaped: bool = False) -> float:
    """utime + stime of a process (all its threads); with `reaped`, also its waited-for
    children's (cutime + cstime)."""
    end = 15 if reaped else 13
    return sum(int(value) for value in fields[11:end]) / CLOCK_TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used; 0 when it is gone."""
    fields = proc_stat(pid)
    return cpu_seconds(fields) if fields else 0.0


def all_processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))):
            found[int(entry.name)] = fields
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    return [child for child, fields in all_processes().items() if int(fields[1]) == pid]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent on anything but idle and I/O wait."""
    line = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(v) for i, v in enumerate(line[:8]) if i not in (3, 4)) / CLOCK_TICKS


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster, the backends it has reaped and
    those still running."""
    processes = all_processes()
    total = cpu_seconds(processes[postmaster], reaped=True) if postmaster in processes else 0.0
    return total + sum(
        cpu_seconds(fields) for fields in processes.values() if int(fields[1]) == postmaster
    )


class OtherLoad:
    """CPU that processes outside a benchmark use meanwhile, in cores.

    The benchmark's own CPU is that of its process trees: this process and everything it
    started, and any other `roots` (PostgreSQL's postmaster and its backends).
    """

    def __init__(self, *roots: int) -> None:
        self._roots = {os.getpid(), *roots}
        self._started: tuple[float, float, float] | None = None

    def _snapshot(self) -> tuple[float, float, float]:
        processes = all_processes()
        parents = {pid: int(fields[1]) for pid, fields in processes.items()}
        ours = 0.0
        for pid, fields in processes.items():
            ancestor = pid
            while ancestor > 1 and ancestor not in self._roots:
                ancestor = parents.get(ancestor, 0)
            if ancestor in self._roots:
                ours += cpu_seconds(fields, reaped=True)
        return time.monotonic(), machine_busy_seconds(), ours

    def start(self) -> None:
        self._started = self._snapshot()

    def cores(self) -> float:
        assert self._started is not None, "start() first"
        now, machine, ours = self._snapshot()
        began, machine_before, ours_before = self._started
        other = (machine - machine_before) - (ours - ours_before)
        return round(max(0.0, other) / (now - began), 2)


def warn_if_busy(other_cores: float, limit: float = 0.1) -> None:
    if other_cores > limit:
        print(
            f"WARNING: other processes used {other_cores:.2f} cores during the measurements; "
            "these figures are not from a quiet machine"
        )

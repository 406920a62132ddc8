"""Every benchmark in bench/, one after another, and one summary of their figures.

Each `bench/<name>.py` (all but the `_` helpers and this script) runs as its own process from
the repository's root, with `--quick` when asked. Each writes `bench/results/<name>.json`
with its headline figures under `figures`: ours, bare, the ratio (the median of the ratios of
at least three alternated pairs), the target and whether it is met. This script gathers them,
with the machine they came from, into `bench/results/summary.json` and prints one table. A
benchmark that fails is reported as failed; the others still run.

    uv run python bench/run_all.py [--quick] [name ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BENCH, RESULTS_DIR, ROOT, describe_machine, write_results


def benchmarks() -> list[str]:
    return sorted(
        path.stem
        for path in BENCH.glob("*.py")
        if not path.name.startswith("_") and path.name != Path(__file__).name
    )


def run_one(name: str, quick: bool) -> dict[str, Any]:
    print(f"\n=== {name}{' --quick' if quick else ''}", flush=True)
    results = RESULTS_DIR / f"{name}.json"
    started_wall = time.time()
    started = time.perf_counter()
    command = [sys.executable, str(BENCH / f"{name}.py"), *(["--quick"] if quick else [])]
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    seconds = round(time.perf_counter() - started, 1)
    fresh = results.is_file() and results.stat().st_mtime >= started_wall
    if code != 0 or not fresh:
        return {"name": name, "ok": False, "exit_code": code, "seconds": seconds, "figures": []}
    written = json.loads(results.read_text())
    return {
        "name": name,
        "ok": True,
        "seconds": seconds,
        "quick": written.get("quick", quick),
        "other_processes_cores": other_load(written),
        "figures": written.get("figures", []),
    }


def other_load(result: dict[str, Any]) -> float | None:
    """The most CPU other processes used during a benchmark's measurements, in cores."""
    found = [
        value
        for key, value in walk(result)
        if key in ("other_processes_cores", "max_other_processes_cores")
    ]
    return max(found) if found else None


def walk(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in [(k, v), *walk(v)]]
    if isinstance(value, list):
        return [item for v in value for item in walk(v)]
    return []


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(summary: dict[str, Any]) -> None:
    machine = summary["machine"]
    print(
        f"\n{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, Kafka {machine['kafka']}, PostgreSQL "
        f"{machine['postgresql']}, {machine['date']}{' (quick)' if summary['quick'] else ''}"
    )
    rows = [("benchmark", "figure", "ours", "bare", "ratio", "target", "met")]
    for bench in summary["benchmarks"]:
        if not bench["ok"]:
            rows.append((bench["name"], "FAILED", "", "", "", "", ""))
            continue
        for item in bench["figures"]:
            ratio = "" if item["ratio"] is None else f"{item['ratio']:.2f}x ({item['pairs']})"
            met = {True: "yes", False: "NO", None: ""}[item["met"]]
            bare = "" if item["bare"] is None else number(item["bare"]) + item["unit"]
            rows.append(
                (
                    bench["name"],
                    item["name"],
                    number(item["ours"]) + item["unit"],
                    bare,
                    ratio,
                    item["target"] or "",
                    met,
                )
            )
    widths = [min(70, max(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell[:70].ljust(width) for cell, width in zip(row, widths, strict=True)))
    busy = [b for b in summary["benchmarks"] if (b.get("other_processes_cores") or 0) > 0.1]
    for bench in busy:
        print(
            f"WARNING: {bench['name']}: other processes used up to "
            f"{bench['other_processes_cores']:.2f} cores: not a quiet machine"
        )


def main() -> int:
    available = benchmarks()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's quick run")
    parser.add_argument("names", nargs="*", help=f"only these, of {', '.join(available)}")
    args = parser.parse_args()
    unknown = set(args.names) - set(available)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    ran = [run_one(name, args.quick) for name in args.names or available]
    summary = {
        "quick": args.quick,
        "machine": describe_machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "benchmarks": ran,
    }
    path = write_results("summary", summary)
    print_table(summary)
    print(f"{len(ran)} benchmarks in {summary['seconds'] / 60:.1f} min; written to {path}")
    return 0 if all(bench["ok"] for bench in ran) else 1


if __name__ == "__main__":
    sys.exit(main())

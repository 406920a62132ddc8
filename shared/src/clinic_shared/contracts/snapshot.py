"""JSON Schema snapshots of the contracts.

`python -m clinic_shared.contracts.snapshot --write` records the current schema of every
contract in `snapshots/`; the contract test fails while a schema differs from its snapshot,
so no contract changes unnoticed. Sample payloads in `samples/<type>/` are kept forever: every
sample ever committed must still validate against the current model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clinic_shared.contracts.registry import CONTRACTS

HERE = Path(__file__).parent
SNAPSHOT_DIR = HERE / "snapshots"
SAMPLE_DIR = HERE / "samples"


def current_schema(event_type: str) -> dict[str, Any]:
    return CONTRACTS[event_type].model_json_schema(mode="validation")


def snapshot_path(event_type: str) -> Path:
    return SNAPSHOT_DIR / f"{event_type}.schema.json"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_snapshots() -> list[str]:
    """Contract types whose schema differs from (or lacks) a committed snapshot."""
    stale = []
    for event_type in sorted(CONTRACTS):
        path = snapshot_path(event_type)
        if not path.exists() or path.read_text() != render(current_schema(event_type)):
            stale.append(event_type)
    return stale


def orphan_snapshots() -> list[str]:
    """Snapshots whose contract is gone: a type is never removed, only superseded."""
    known = {snapshot_path(t).name for t in CONTRACTS}
    return sorted(p.name for p in SNAPSHOT_DIR.glob("*.schema.json") if p.name not in known)


def samples() -> list[tuple[str, Path]]:
    return [
        (directory.name, sample)
        for directory in sorted(SAMPLE_DIR.iterdir())
        if directory.is_dir()
        for sample in sorted(directory.glob("*.json"))
    ]


def write_snapshots() -> list[str]:
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    written = []
    for event_type in sorted(CONTRACTS):
        path = snapshot_path(event_type)
        text = render(current_schema(event_type))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(event_type)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the current schemas")
    args = parser.parse_args()
    if args.write:
        for event_type in write_snapshots():
            print(f"snapshot written: {event_type}")
        return
    stale = stale_snapshots()
    for event_type in stale:
        print(f"schema changed without a snapshot: {event_type}")
    raise SystemExit(1 if stale else 0)


if __name__ == "__main__":
    main()

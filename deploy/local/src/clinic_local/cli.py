"""The `clinic` command: `clinic run` (the whole system locally), `clinic token` (a signed JWT)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clinic_local.runner import jwt_secret, run
from clinic_shared.auth import token_cli

DEFAULT_DATA_DIR = Path(os.environ.get("CLINIC_DATA_DIR", ".clinic"))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"]:
        # The secret the local run uses, unless the environment names one.
        os.environ.setdefault("CLINIC_JWT_SECRET", jwt_secret(DEFAULT_DATA_DIR))
        token_cli(args[1:])
        return
    parser = argparse.ArgumentParser(prog="clinic")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the whole system on this machine")
    run_parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    run_parser.add_argument(
        "--port-base", type=int, default=8000, help="APIs listen on base+1 .. base+4"
    )
    run_parser.add_argument("--kafka-port", type=int, default=None)
    sub.add_parser("token", help="print a signed JWT (see `clinic token --help`)")
    parsed = parser.parse_args(args)
    if parsed.command == "run":
        raise SystemExit(run(parsed.data_dir, parsed.port_base, parsed.kafka_port))


if __name__ == "__main__":
    main()

"""The service command line: `python -m <service> migrate` and `downgrade` on a real database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

SERVICES = ["booking", "waitlist", "billing", "notify"]


def _cli(service: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, f"{service.upper()}_DATABASE_URL": url, "CLINIC_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", service, *args], env=env, capture_output=True, text=True, timeout=60
    )


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.mark.parametrize("service", SERVICES)
def test_migrate_then_downgrade_to_base_through_the_command_line(service, tmp_path):
    path = tmp_path / f"{service}.db"
    url = f"sqlite+aiosqlite:///{path}"
    up = _cli(service, url, "migrate")
    assert up.returncode == 0, up.stderr
    assert {"outbox", "outbox_lane", "inbox", "idempotency_key"} <= _tables(path)
    down = _cli(service, url, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert _tables(path) <= {"alembic_version"}


def test_only_a_service_with_demo_data_offers_seed(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    refused = _cli("waitlist", url, "seed")
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr

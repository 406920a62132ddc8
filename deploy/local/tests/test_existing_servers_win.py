"""Settings that point at existing servers win: the fixtures then launch nothing."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
from clinic_local.postgres import ExternalPostgres


def test_fixtures_use_the_servers_named_in_the_environment(kafka_bootstrap, postgres_cluster):
    assert kafka_bootstrap == "kafka.example.internal:19092"
    assert isinstance(postgres_cluster, ExternalPostgres)
    assert postgres_cluster.dsn("booking") == (
        "postgresql+asyncpg://clinic@db.example.internal:15432/booking"
    )


def test_a_test_that_must_control_the_broker_fails_instead_of_skipping(kafka_broker):
    pass
"""


def test_existing_servers_named_in_the_environment_are_used_and_nothing_is_launched(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {
        **os.environ,
        "CLINIC_TEST_KAFKA_BOOTSTRAP": "kafka.example.internal:19092",
        "CLINIC_TEST_POSTGRES_DSN": "postgresql://clinic@db.example.internal:15432/postgres",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "clinic_local.pytest_plugin",
            "-rfE",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 passed, 1 error" in result.stdout, result.stdout  # an error, never a skip
    assert "points at an external server" in result.stdout
    assert "skipped" not in result.stdout

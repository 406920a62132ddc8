"""Fixtures every test directory shares. Kafka and PostgreSQL come from clinic_local's plugin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_JWT_SECRET = "test-secret-0123456789-0123456789-0123456789"
REPO_ROOT = Path(__file__).resolve().parent


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database on each back end: a SQLite file, or a fresh PostgreSQL database."""
    if db_backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    return str(request.getfixturevalue("fresh_pg_database"))


@pytest.fixture
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CLINIC_JWT_SECRET", TEST_JWT_SECRET)
    yield TEST_JWT_SECRET

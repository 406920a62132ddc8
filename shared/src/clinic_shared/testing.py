"""Helpers for the services' tests: migrated databases, in-process API clients, tokens,
outbox inspection. Imported only by tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clinic_shared import migrations
from clinic_shared.auth import Role, issue_token
from clinic_shared.clock import FakeClock, SystemClock
from clinic_shared.tables import InfraTables

__all__ = ["FakeClock", "SystemClock", "api_client", "bearer", "count_rows", "migrate"]


async def migrate(service_dir: Path, database_url: str, revision: str = "head") -> None:
    """Alembic runs its own event loop, so it runs in a worker thread."""
    await asyncio.to_thread(migrations.upgrade, service_dir, database_url, revision)


def bearer(secret: str, role: Role | str, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret, role, subject)}"}


def api_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def count_rows(engine: AsyncEngine, table: str | sa.Table) -> int:
    target = sa.table(table) if isinstance(table, str) else table
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(target)
        return int((await conn.execute(query)).scalar_one())


async def outbox_rows(engine: AsyncEngine, tables: InfraTables) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(tables.outbox).order_by(tables.outbox.c.id))
        return [dict(r) for r in rows.mappings()]

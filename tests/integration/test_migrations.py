"""Every service's Alembic history, on SQLite and PostgreSQL: up one revision at a time, down one
at a time back to base, up again; and the migrated schema is the one the code maps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from billing.adapters import orm as billing_orm
from billing.entrypoints import cli as billing_cli
from booking.adapters import orm as booking_orm
from booking.entrypoints import cli as booking_cli
from clinic_shared import migrations
from clinic_shared.tables import OUTBOX_LANES
from notify.adapters import orm as notify_orm
from notify.entrypoints import cli as notify_cli
from waitlist.adapters import orm as waitlist_orm
from waitlist.entrypoints import cli as waitlist_cli


@dataclass(frozen=True)
class Service:
    directory: Path
    metadata: sa.MetaData


SERVICES = {
    "booking": Service(booking_cli.SERVICE_DIR, booking_orm.metadata),
    "waitlist": Service(waitlist_cli.SERVICE_DIR, waitlist_orm.metadata),
    "billing": Service(billing_cli.SERVICE_DIR, billing_orm.metadata),
    "notify": Service(notify_cli.SERVICE_DIR, notify_orm.metadata),
}
T = TypeVar("T")
ALEMBIC_VERSION = "alembic_version"
INFRA_TABLES = frozenset({"outbox", "outbox_lane", "inbox", "idempotency_key"})
# What the revisions known today add; later revisions are checked for symmetry (a downgrade
# takes back exactly what its upgrade added) and, at head, against the service's metadata.
KNOWN_ADDITIONS: dict[tuple[str, str], frozenset[str]] = {
    ("booking", "0001"): INFRA_TABLES,
    ("booking", "0002"): frozenset({"patient"}),
    ("booking", "0003"): frozenset({"intake", "course", "hold", "appointment", "audit_entry"}),
    ("waitlist", "0001"): INFRA_TABLES,
    ("waitlist", "0002"): frozenset({"entry", "block", "offer"}),
    ("billing", "0001"): INFRA_TABLES,
    ("billing", "0002"): frozenset(
        {
            "price_book",
            "processor_customer",
            "payment_method",
            "course",
            "charge",
            "charge_attempt",
            "financing_plan",
            "refund",
            "ledger_entry",
            "chargeback",
            "webhook_event",
            "settlement_report",
        }
    ),
    ("notify", "0001"): INFRA_TABLES,
    ("notify", "0002"): frozenset({"notification"}),
    ("notify", "0003"): frozenset(
        {"message", "delivery", "preference", "appointment", "inbound_reply"}
    ),
}

Schema = dict[str, frozenset[str]]
"""Table name -> column names, without Alembic's own table."""


def _schema(conn: Connection) -> Schema:
    inspector = sa.inspect(conn)
    return {
        table: frozenset(column["name"] for column in inspector.get_columns(table))
        for table in inspector.get_table_names()
        if table != ALEMBIC_VERSION
    }


def _table_names(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(ALEMBIC_VERSION):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {ALEMBIC_VERSION}")).scalar()


async def inspect(engine: AsyncEngine, how: Callable[[Connection], T]) -> T:
    async with engine.connect() as conn:
        return await conn.run_sync(how)


async def upgrade(service: Service, url: str, revision: str) -> None:
    await asyncio.to_thread(migrations.upgrade, service.directory, url, revision)


async def downgrade(service: Service, url: str, revision: str) -> None:
    await asyncio.to_thread(migrations.downgrade, service.directory, url, revision)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # No pooled connection stays open while Alembic migrates from its own thread and engine.
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


def test_every_service_has_a_linear_history_starting_with_the_infra_tables():
    for name, service in SERVICES.items():
        revisions = migrations.revisions(service.directory)
        assert revisions, name
        assert revisions[0] == "0001", name
        assert len(set(revisions)) == len(revisions), name


@pytest.mark.parametrize("name", SERVICES)
async def test_migrations_walk_up_and_down_one_revision_at_a_time(name, database_url, engine):
    service = SERVICES[name]
    revisions = migrations.revisions(service.directory)
    assert await inspect(engine, _schema) == {}

    before_each: list[Schema] = []
    added: dict[str, set[str]] = {}
    for revision in revisions:
        before = await inspect(engine, _schema)
        await upgrade(service, database_url, revision)
        after = await inspect(engine, _schema)
        assert await inspect(engine, _current_revision) == revision
        added[revision] = set(after) - set(before)
        expected = KNOWN_ADDITIONS.get((name, revision))
        if expected is not None:
            assert added[revision] == expected, f"{name} {revision}"
        before_each.append(before)

    at_head = await inspect(engine, _schema)
    assert set(at_head) == set(service.metadata.tables)

    for index in reversed(range(len(revisions))):
        revision = revisions[index]
        target = revisions[index - 1] if index else "base"
        await downgrade(service, database_url, target)
        after = await inspect(engine, _schema)
        assert added[revision].isdisjoint(after), f"{name} {revision} left tables behind"
        assert after == before_each[index], f"{name} {revision} downgrade is not its inverse"
        assert await inspect(engine, _current_revision) == (target if index else None)

    assert await inspect(engine, _table_names) <= {ALEMBIC_VERSION}

    await upgrade(service, database_url, "head")
    assert await inspect(engine, _schema) == at_head
    await upgrade(service, database_url, "head")
    assert await inspect(engine, _schema) == at_head
    assert await inspect(engine, _current_revision) == revisions[-1]


@pytest.mark.parametrize("name", SERVICES)
async def test_the_migrated_schema_matches_the_services_metadata(name, database_url, engine):
    service = SERVICES[name]
    await upgrade(service, database_url, "head")

    schema = await inspect(engine, _schema)

    missing = set(service.metadata.tables) - set(schema)
    assert not missing, f"{name}: tables in the code but not in the database: {missing}"
    unmapped = set(schema) - set(service.metadata.tables)
    assert not unmapped, f"{name}: tables in the database the code does not map: {unmapped}"
    for table_name, table in service.metadata.tables.items():
        assert schema[table_name] == frozenset(table.columns.keys()), f"{name}.{table_name}"


@pytest.mark.parametrize("name", SERVICES)
async def test_the_outbox_lanes_are_seeded_by_the_first_revision(name, database_url, engine):
    service = SERVICES[name]
    await upgrade(service, database_url, "0001")

    def lanes(conn: Connection) -> list[int]:
        return list(conn.execute(sa.text("SELECT lane FROM outbox_lane ORDER BY lane")).scalars())

    assert await inspect(engine, lanes) == list(range(OUTBOX_LANES))


@pytest.mark.parametrize("name", SERVICES)
async def test_autogenerate_finds_no_drift_between_migrations_and_metadata(
    name, database_url, engine
):
    service = SERVICES[name]
    await upgrade(service, database_url, "head")

    def drift(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, service.metadata))

    assert await inspect(engine, drift) == []


async def test_notifys_welcome_notifications_become_messages_and_come_back(database_url, engine):
    """0003 replaces the thin flow's `notification` table: its rows are kept as messages."""
    service = SERVICES["notify"]
    await upgrade(service, database_url, "0002")
    patient_id, row_id = uuid.uuid4(), uuid.uuid4()
    due = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)
    notification = sa.table(
        "notification",
        sa.column("id", sa.Uuid()),
        sa.column("patient_id", sa.Uuid()),
        *(sa.column(c) for c in ("kind", "channel", "status")),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("source_event_id"),
    )
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(notification).values(
                id=row_id, patient_id=patient_id, kind="welcome", channel="email",
                status="scheduled", due_at=due, created_at=due, source_event_id="evt-1",
            )
        )  # fmt: skip

    await upgrade(service, database_url, "0003")

    def messages(conn: Connection) -> list[tuple[object, ...]]:
        query = sa.text("SELECT kind, step, channel, status, dedupe_key FROM message")
        return [tuple(row) for row in conn.execute(query)]

    assert await inspect(engine, messages) == [
        ("welcome", "welcome", "email", "scheduled", f"welcome:{patient_id}:email")
    ]
    await downgrade(service, database_url, "0002")

    def notifications(conn: Connection) -> list[tuple[object, ...]]:
        query = sa.text("SELECT kind, channel, status FROM notification")
        return [tuple(row) for row in conn.execute(query)]

    assert await inspect(engine, notifications) == [("welcome", "email", "scheduled")]

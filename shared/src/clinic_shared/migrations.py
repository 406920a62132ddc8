"""Alembic support every service's `migrations/env.py` delegates to, and a programmatic
upgrade/downgrade used by the `migrate` command and the tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def run_env(target_metadata: sa.MetaData) -> None:
    """Body of a service's env.py: migrate over an async engine or a given connection."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, target_metadata)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set for this migration run")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(url, target_metadata))


async def _run_async(url: str, target_metadata: sa.MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run, target_metadata)
            await conn.commit()
    finally:
        await engine.dispose()


def _run(connection: Connection, target_metadata: sa.MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def alembic_config(service_dir: Path, database_url: str) -> Config:
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(service_dir: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service_dir, database_url), revision)


def downgrade(service_dir: Path, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(service_dir, database_url), revision)


def revisions(service_dir: Path) -> list[str]:
    """Revision ids from base to head."""
    script = ScriptDirectory.from_config(alembic_config(service_dir, "sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def create_infra_tables_v1(lanes: int) -> None:
    """Outbox, outbox lanes, inbox and idempotency keys, as first released.

    Frozen: a later change to these tables is a new helper and a new revision in every service.
    """
    from alembic import op

    ts = sa.DateTime(timezone=True)
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("lane", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("occurred_at", ts, nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("causation_id", sa.String(64)),
        sa.Column("sent_at", ts),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["lane", "id"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )
    lane_table = op.create_table(
        "outbox_lane", sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False)
    )
    op.bulk_insert(lane_table, [{"lane": n} for n in range(lanes)])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("received_at", ts, nullable=False),
    )
    op.create_table(
        "idempotency_key",
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response_body", sa.JSON, nullable=False),
        sa.Column("created_at", ts, nullable=False),
    )


def drop_infra_tables_v1() -> None:
    from alembic import op

    op.drop_table("idempotency_key")
    op.drop_table("inbox")
    op.drop_table("outbox_lane")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")

"""Tables every service owns alongside its domain tables: outbox, inbox, idempotency keys.

They are built on the service's own MetaData so that each service's Alembic history owns them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import sqlalchemy as sa

from clinic_shared.db import UtcDateTime

OUTBOX_LANES = 16
"""Outbox rows are spread over lanes by key; one relay at a time owns a lane, so events of
one key are published in order while several relays share the work."""

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def lane_for(key: str, lanes: int = OUTBOX_LANES) -> int:
    return zlib.crc32(key.encode()) % lanes


@dataclass(frozen=True)
class InfraTables:
    outbox: sa.Table
    outbox_lane: sa.Table
    inbox: sa.Table
    idempotency: sa.Table


def infra_tables(metadata: sa.MetaData) -> InfraTables:
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("lane", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("causation_id", sa.String(64)),
        sa.Column("sent_at", UtcDateTime),
        sa.Index(
            "ix_outbox_unsent",
            "lane",
            "id",
            postgresql_where=sa.text("sent_at IS NULL"),
            sqlite_where=sa.text("sent_at IS NULL"),
        ),
    )
    outbox_lane = sa.Table(
        "outbox_lane",
        metadata,
        sa.Column("lane", sa.Integer, primary_key=True, autoincrement=False),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    idempotency = sa.Table(
        "idempotency_key",
        metadata,
        sa.Column("scope", sa.String(300), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response_body", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    return InfraTables(outbox=outbox, outbox_lane=outbox_lane, inbox=inbox, idempotency=idempotency)

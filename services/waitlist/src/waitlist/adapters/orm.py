"""Waitlist's tables: its own metadata for its own database."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import JSON, Column, Float, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from clinic_shared.db import UtcDateTime
from clinic_shared.tables import infra_tables


class WaitlistTable(SQLModel, registry=registry()):
    pass


class EntryRow(WaitlistTable, table=True):
    """A patient waiting for a protocol; the queue is ordered by priority, then rank."""

    __tablename__ = "entry"
    __table_args__ = (Index("ix_entry_queue", "status", "priority", "rank"),)

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    earliest_start: date
    weekdays: list[str] = Field(sa_column=Column(JSON, nullable=False))
    windows: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    priority: str = Field(max_length=8)
    rank: float = Field(sa_column=Column(Float(precision=53), nullable=False))
    status: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    created_by: str = Field(max_length=16)
    fulfilled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    first_infusion_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class BlockRow(WaitlistTable, table=True):
    """Held slots booking handed over (id = the hold's id), or one slot of a split series."""

    __tablename__ = "block"

    id: UUID = Field(primary_key=True)
    hold_id: UUID = Field(index=True)
    parent_id: UUID | None = Field(default=None, index=True)
    kind: str = Field(max_length=8)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    slots: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    slot_count: int
    status: str = Field(max_length=16)
    released_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class OfferRow(WaitlistTable, table=True):
    """An offer of a block to an entry. Open offers are the expiry due-queue (by expires_at)."""

    __tablename__ = "offer"
    __table_args__ = (
        # One live offer per block, whatever races: the database refuses a second.
        Index(
            "uq_offer_live_per_block",
            "block_id",
            unique=True,
            postgresql_where=sa.text("status IN ('open', 'accepting')"),
            sqlite_where=sa.text("status IN ('open', 'accepting')"),
        ),
        Index(
            "ix_offer_due",
            "expires_at",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
    )

    id: UUID = Field(primary_key=True)
    block_id: UUID = Field(foreign_key="block.id", index=True)
    hold_id: UUID
    entry_id: UUID = Field(foreign_key="entry.id", index=True)
    patient_id: UUID = Field(index=True)
    protocol: str = Field(max_length=32)
    slots: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=16)
    manual: bool = False
    made_by: str = Field(max_length=64)
    made_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    failure_reason: str | None = Field(default=None, max_length=32)
    course_id: UUID | None = Field(default=None)


metadata = WaitlistTable.metadata
INFRA = infra_tables(metadata)

"""Notify's tables: its own metadata (shared infra tables included) for its own database."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import Column, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from clinic_shared.db import UtcDateTime
from clinic_shared.tables import infra_tables


class NotifyTable(SQLModel, registry=registry()):
    pass


class NotificationRow(NotifyTable, table=True):
    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("source_event_id", "kind", "channel", name="uq_notification_source"),
    )

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    due_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    source_event_id: str = Field(max_length=36)


metadata = NotifyTable.metadata
INFRA = infra_tables(metadata)

"""Notify's tables: its own metadata (shared infra tables included) for its own database.

No table holds a name, an address, a phone number or a message body: contact details are
asked of booking when a message is sent, and the send ledger keeps only a keyed digest of the
number a text went to (so that a reply can be matched to it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from clinic_shared.db import UtcDateTime
from clinic_shared.tables import infra_tables


class NotifyTable(SQLModel, registry=registry()):
    pass


class MessageRow(NotifyTable, table=True):
    """The due-queue: one row per message per channel."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_message_dedupe"),
        Index("ix_message_due", "status", "due_at"),
        Index("ix_message_subject", "subject_id"),
    )

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    step: str = Field(max_length=48)
    channel: str = Field(max_length=16)
    dedupe_key: str = Field(max_length=200)
    subject_id: UUID | None = None
    facts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    planned_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    due_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    send_by: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    status: str = Field(max_length=16)
    attempts: int = 0
    claim_token: UUID | None = None
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    provider_ref: str | None = Field(default=None, max_length=200)
    last_error: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class DeliveryRow(NotifyTable, table=True):
    """The send ledger: written and committed before each provider call, completed after."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("message_id", "attempt", name="uq_delivery_attempt"),
        Index("ix_delivery_recipient", "recipient_digest", "started_at"),
    )

    id: UUID = Field(primary_key=True)
    message_id: UUID = Field(index=True)
    attempt: int
    channel: str = Field(max_length=16)
    outcome: str = Field(max_length=16)
    """`sending`, then `accepted`, `deferred`, `rejected` or `unknown`."""
    recipient_digest: str | None = Field(default=None, max_length=64)
    provider_ref: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class PreferenceRow(NotifyTable, table=True):
    __tablename__ = "preference"

    patient_id: UUID = Field(primary_key=True)
    channels: list[str] = Field(sa_column=Column(JSON, nullable=False))
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    push_device: str | None = Field(default=None, max_length=512)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class AppointmentRow(NotifyTable, table=True):
    """What notify knows of booking's appointments, from booking's events."""

    __tablename__ = "appointment"

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    course_id: UUID = Field(index=True)
    family: str = Field(max_length=16)
    protocol: str = Field(max_length=64)
    start: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    end: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    status: str = Field(max_length=16)
    revision: int = 0


class InboundReplyRow(NotifyTable, table=True):
    """A text a patient sent back. Only its meaning is kept (`yes` or `other`), not its words."""

    __tablename__ = "inbound_reply"
    __table_args__ = (
        UniqueConstraint("provider_ref", name="uq_inbound_provider_ref"),
        Index("ix_inbound_due", "status", "due_at"),
    )

    id: UUID = Field(primary_key=True)
    provider_ref: str = Field(max_length=64)
    sender_digest: str = Field(max_length=64)
    meaning: str = Field(max_length=16)
    message_id: UUID | None = None
    """The ride-home text it answers, when one was found."""
    appointment_id: UUID | None = None
    patient_id: UUID | None = None
    status: str = Field(max_length=16)
    """`pending` (to tell booking), `applied`, `unmatched`, `refused`, `ignored`."""
    attempts: int = 0
    due_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


metadata = NotifyTable.metadata
INFRA = infra_tables(metadata)

"""Billing's tables: its own metadata for its own database. Money columns are integer cents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from clinic_shared.db import UtcDateTime
from clinic_shared.tables import infra_tables

WAITING = sa.text("status IN ('pending', 'retrying')")
REFUND_PENDING = sa.text("status = 'pending'")


class BillingTable(SQLModel, registry=registry()):
    pass


class PriceBookRow(BillingTable, table=True):
    """A published price book; the one in effect at an instant has the latest effective_from."""

    __tablename__ = "price_book"

    version: int = Field(primary_key=True)
    effective_from: datetime = Field(sa_column=Column(UtcDateTime, nullable=False, index=True))
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class CustomerRow(BillingTable, table=True):
    """The patient's customer at the card processor (processor ids only)."""

    __tablename__ = "processor_customer"

    patient_id: UUID = Field(primary_key=True)
    customer_id: str = Field(max_length=255)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class PaymentMethodRow(BillingTable, table=True):
    """A saved card: the processor's token, its brand and last four digits; never the number."""

    __tablename__ = "payment_method"

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    customer_id: str = Field(max_length=255)
    processor_payment_method_id: str = Field(max_length=255)
    brand: str = Field(max_length=32)
    last4: str = Field(max_length=4)
    exp_month: int | None = None
    exp_year: int | None = None
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    is_default: bool = True
    """The card charges go to: the one saved last."""


class CourseRow(BillingTable, table=True):
    """A booked course as billing learned it (`booking.course.booked.v1`): plans finance it."""

    __tablename__ = "course"

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    infusions: int
    booked_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class ChargeRow(BillingTable, table=True):
    """One amount for one cause. Waiting charges are the card due-queue (by due_at)."""

    __tablename__ = "charge"
    __table_args__ = (
        UniqueConstraint("kind", "cause_id", name="uq_charge_cause"),
        Index("ix_charge_due", "due_at", postgresql_where=WAITING, sqlite_where=WAITING),
        Index("ix_charge_patient", "patient_id", "created_at"),
    )

    id: UUID = Field(primary_key=True)
    patient_id: UUID
    kind: str = Field(max_length=24)
    cause_id: UUID
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    description: str = Field(max_length=120)
    status: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    service_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    course_id: UUID | None = Field(default=None, index=True)
    appointment_id: UUID | None = Field(default=None)
    plan_id: UUID | None = Field(default=None, index=True)
    sequence: int | None = None
    due_date: date | None = None
    protocol: str | None = Field(default=None, max_length=32)
    family: str | None = Field(default=None, max_length=8)
    ordinal: int | None = None
    infusion_minutes: int | None = None
    price_book_version: int | None = None
    attempts: int = 0
    unknown_outcomes: int = 0
    payment_id: str | None = Field(default=None, max_length=255, index=True)
    failure_code: str | None = Field(default=None, max_length=64)
    refunded_cents: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class ChargeAttemptRow(BillingTable, table=True):
    """Every decided try at the card, paid or declined, with the idempotency key it used."""

    __tablename__ = "charge_attempt"

    id: UUID = Field(primary_key=True)
    charge_id: UUID = Field(foreign_key="charge.id", index=True)
    number: int
    idempotency_key: str = Field(max_length=100)
    succeeded: bool
    payment_id: str | None = Field(default=None, max_length=255)
    failure_code: str | None = Field(default=None, max_length=64)
    failure_message: str | None = Field(default=None, max_length=255)
    attempted_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class PlanRow(BillingTable, table=True):
    """An interest-free financing plan; its installments are charges of kind `installment`."""

    __tablename__ = "financing_plan"
    __table_args__ = (
        # One plan per course: financing a course twice would bill it twice.
        Index("uq_plan_course", "course_id", unique=True),
    )

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(index=True)
    course_id: UUID | None = None
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    installment_count: int
    status: str = Field(max_length=16, index=True)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    created_by: str = Field(max_length=64)
    delinquent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class RefundRow(BillingTable, table=True):
    """Money returned to a card. Pending refunds are the refund due-queue."""

    __tablename__ = "refund"
    __table_args__ = (
        Index(
            "ix_refund_due", "due_at", postgresql_where=REFUND_PENDING, sqlite_where=REFUND_PENDING
        ),
    )

    id: UUID = Field(primary_key=True)
    charge_id: UUID = Field(foreign_key="charge.id", index=True)
    patient_id: UUID = Field(index=True)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=200)
    status: str = Field(max_length=16)
    requested_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    processor_refund_id: str | None = Field(default=None, max_length=255)
    failure_code: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    unknown_outcomes: int = 0


class LedgerEntryRow(BillingTable, table=True):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_patient", "patient_id", "position"),)

    position: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    id: UUID = Field(unique=True)
    patient_id: UUID
    kind: str = Field(max_length=16)
    description: str = Field(max_length=120)
    charged_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    paid_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    charge_id: UUID | None = Field(default=None, index=True)
    plan_id: UUID | None = None
    refund_id: UUID | None = None
    reference: str | None = Field(default=None, max_length=255)


class ChargebackRow(BillingTable, table=True):
    """A dispute the processor reported (id = its dispute id)."""

    __tablename__ = "chargeback"

    id: str = Field(primary_key=True, max_length=255)
    charge_id: UUID = Field(index=True)
    payment_id: str = Field(max_length=255)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class WebhookEventRow(BillingTable, table=True):
    """Processor webhooks applied, by the processor's event id: a repeat changes nothing."""

    __tablename__ = "webhook_event"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    received_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class SettlementReportRow(BillingTable, table=True):
    """One uploaded settlement report and what reconciling it found."""

    __tablename__ = "settlement_report"

    id: UUID = Field(primary_key=True)
    uploaded_by: str = Field(max_length=64)
    uploaded_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    settlement_date: date | None = None
    summary: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    outcomes: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))


metadata = BillingTable.metadata
INFRA = infra_tables(metadata)

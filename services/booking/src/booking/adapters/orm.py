"""Booking's tables: its own metadata (shared infra tables included) for its own database."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from clinic_shared.db import UtcDateTime
from clinic_shared.tables import infra_tables


class BookingTable(SQLModel, registry=registry()):
    pass


class PatientRow(BookingTable, table=True):
    __tablename__ = "patient"

    id: UUID = Field(primary_key=True)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    date_of_birth: date
    email: str = Field(max_length=254)
    phone: str = Field(max_length=32)
    registered_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    registered_by: str = Field(max_length=16)


class IntakeRow(BookingTable, table=True):
    __tablename__ = "intake"

    patient_id: UUID = Field(primary_key=True, foreign_key="patient.id")
    condition: str | None = Field(default=None, max_length=8)
    screening: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    medications: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    diagnosis_codes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    treating_clinician: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=16)
    submitted_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    cleared_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    cleared_by: str | None = Field(default=None, max_length=64)
    override_reason: str | None = Field(default=None, max_length=1000)


class CourseRow(BookingTable, table=True):
    __tablename__ = "course"

    id: UUID = Field(primary_key=True)
    patient_id: UUID = Field(foreign_key="patient.id", index=True)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    booked_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    booked_by: str = Field(max_length=8)
    hold_id: UUID | None = Field(default=None)
    offer_id: UUID | None = Field(default=None, unique=True)


class HoldRow(BookingTable, table=True):
    """Slots held for the waitlist: no one else can book them while the hold is open."""

    __tablename__ = "hold"

    id: UUID = Field(primary_key=True)
    source_course_id: UUID = Field(foreign_key="course.id", index=True)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    kind: str = Field(max_length=8)
    status: str = Field(max_length=16)
    placed_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    released_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))


class AppointmentRow(BookingTable, table=True):
    """One occupancy of a chair (or consult resource): a booked appointment or a held slot.

    On PostgreSQL an exclusion constraint forbids two live occupancies of one resource from
    overlapping (migration 0003); on SQLite the check runs inside an immediate transaction.
    """

    __tablename__ = "appointment"
    __table_args__ = (
        Index("ix_appointment_resource_start", "resource_id", "start_at"),
        Index("ix_appointment_patient_start", "patient_id", "start_at"),
    )

    id: UUID = Field(primary_key=True)
    course_id: UUID | None = Field(default=None, foreign_key="course.id", index=True)
    patient_id: UUID | None = Field(default=None, foreign_key="patient.id")
    hold_id: UUID | None = Field(default=None, foreign_key="hold.id", index=True)
    protocol: str = Field(max_length=32)
    family: str = Field(max_length=8)
    sequence: int
    resource_id: str = Field(max_length=32)
    start_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    end_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    first_visit: bool
    status: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    cancelled_by: str | None = Field(default=None, max_length=8)
    cancel_timing: str | None = Field(default=None, max_length=8)
    cancel_reason: str | None = Field(default=None, max_length=1000)
    fee_cents: int = 0
    fee_waived: bool = False
    checked_in_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    completed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    infusion_minutes: int | None = None
    ride_confirmed: bool = False
    ride_confirmed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    driver_name: str | None = Field(default=None, max_length=200)
    driver_phone: str | None = Field(default=None, max_length=32)


class AuditRow(BookingTable, table=True):
    """Who did what to whom and why: fee waivers, clearance overrides, reviewed releases."""

    __tablename__ = "audit_entry"

    id: UUID = Field(primary_key=True)
    at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    actor_role: str = Field(max_length=16)
    actor_id: str = Field(max_length=64)
    action: str = Field(max_length=32)
    subject_id: UUID = Field(index=True)
    reason: str = Field(max_length=1000)


metadata = BookingTable.metadata
INFRA = infra_tables(metadata)

"""Booking's tables: its own metadata (shared infra tables included) for its own database."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import Column
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


metadata = BookingTable.metadata
INFRA = infra_tables(metadata)

"""Waitlist's tables: its own metadata for its own database."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from clinic_shared.tables import infra_tables


class WaitlistTable(SQLModel, registry=registry()):
    pass


metadata = WaitlistTable.metadata
INFRA = infra_tables(metadata)

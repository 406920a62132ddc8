"""Billing's tables: its own metadata for its own database."""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from clinic_shared.tables import infra_tables


class BillingTable(SQLModel, registry=registry()):
    pass


metadata = BillingTable.metadata
INFRA = infra_tables(metadata)

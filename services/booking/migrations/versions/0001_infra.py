"""Outbox, inbox and idempotency tables.

Revision ID: 0001
Revises:
"""

from clinic_shared.migrations import create_infra_tables_v1, drop_infra_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infra_tables_v1(lanes=16)


def downgrade() -> None:
    drop_infra_tables_v1()

"""Entries, released blocks and offers.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = sa.text("status IN ('open', 'accepting')")
OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.create_table(
        "entry",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("patient_id", sa.Uuid, nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("earliest_start", sa.Date, nullable=False),
        sa.Column("weekdays", sa.JSON, nullable=False),
        sa.Column("windows", sa.JSON, nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("rank", sa.Float(precision=53), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(16), nullable=False),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True)),
        sa.Column("first_infusion_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_entry_patient_id", "entry", ["patient_id"])
    op.create_index("ix_entry_queue", "entry", ["status", "priority", "rank"])
    op.create_table(
        "block",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("hold_id", sa.Uuid, nullable=False),
        sa.Column("parent_id", sa.Uuid),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("slots", sa.JSON, nullable=False),
        sa.Column("slot_count", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_block_hold_id", "block", ["hold_id"])
    op.create_index("ix_block_parent_id", "block", ["parent_id"])
    op.create_table(
        "offer",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("block_id", sa.Uuid, sa.ForeignKey("block.id"), nullable=False),
        sa.Column("hold_id", sa.Uuid, nullable=False),
        sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid, nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("slots", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("made_by", sa.String(64), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("failure_reason", sa.String(32)),
        sa.Column("course_id", sa.Uuid),
    )
    op.create_index("ix_offer_block_id", "offer", ["block_id"])
    op.create_index("ix_offer_entry_id", "offer", ["entry_id"])
    op.create_index("ix_offer_patient_id", "offer", ["patient_id"])
    op.create_index(
        "uq_offer_live_per_block",
        "offer",
        ["block_id"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index(
        "ix_offer_due", "offer", ["expires_at"], postgresql_where=OPEN, sqlite_where=OPEN
    )


def downgrade() -> None:
    op.drop_table("offer")
    op.drop_table("block")
    op.drop_table("entry")

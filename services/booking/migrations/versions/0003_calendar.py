"""Intake, courses, appointments, holds and the audit log; no two live occupancies overlap.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE_STATUSES = "('booked', 'held', 'checked_in', 'completed')"


def upgrade() -> None:
    op.create_table(
        "intake",
        sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), primary_key=True),
        sa.Column("condition", sa.String(8)),
        sa.Column("screening", sa.JSON, nullable=False),
        sa.Column("medications", sa.JSON, nullable=False),
        sa.Column("diagnosis_codes", sa.JSON, nullable=False),
        sa.Column("treating_clinician", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True)),
        sa.Column("cleared_by", sa.String(64)),
        sa.Column("override_reason", sa.String(1000)),
    )
    op.create_table(
        "course",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("booked_by", sa.String(8), nullable=False),
        sa.Column("hold_id", sa.Uuid),
        sa.Column("offer_id", sa.Uuid, unique=True),
    )
    op.create_index("ix_course_patient_id", "course", ["patient_id"])
    op.create_table(
        "hold",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("source_course_id", sa.Uuid, sa.ForeignKey("course.id"), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_hold_source_course_id", "hold", ["source_course_id"])
    op.create_table(
        "appointment",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("course_id", sa.Uuid, sa.ForeignKey("course.id")),
        sa.Column("patient_id", sa.Uuid, sa.ForeignKey("patient.id")),
        sa.Column("hold_id", sa.Uuid, sa.ForeignKey("hold.id")),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_visit", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_by", sa.String(8)),
        sa.Column("cancel_timing", sa.String(8)),
        sa.Column("cancel_reason", sa.String(1000)),
        sa.Column("fee_cents", sa.Integer, nullable=False),
        sa.Column("fee_waived", sa.Boolean, nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("infusion_minutes", sa.Integer),
        sa.Column("ride_confirmed", sa.Boolean, nullable=False),
        sa.Column("ride_confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("driver_name", sa.String(200)),
        sa.Column("driver_phone", sa.String(32)),
        sa.CheckConstraint("end_at > start_at", name="ck_appointment_positive_length"),
    )
    op.create_index("ix_appointment_course_id", "appointment", ["course_id"])
    op.create_index("ix_appointment_hold_id", "appointment", ["hold_id"])
    op.create_index("ix_appointment_resource_start", "appointment", ["resource_id", "start_at"])
    op.create_index("ix_appointment_patient_start", "appointment", ["patient_id", "start_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE appointment ADD CONSTRAINT appointment_no_overlap EXCLUDE USING gist "
            "(resource_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) "
            f"WHERE (status IN {LIVE_STATUSES})"
        )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.Uuid, nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
    )
    op.create_index("ix_audit_entry_subject_id", "audit_entry", ["subject_id"])


def downgrade() -> None:
    op.drop_table("audit_entry")
    op.drop_table("appointment")
    op.drop_table("hold")
    op.drop_table("course")
    op.drop_table("intake")

"""Reminders: messages (the due-queue), the send ledger, preferences, known appointments and
inbound replies. The thin flow's `notification` rows (welcome e-mails) become messages.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from clinic_shared.db import UtcDateTime


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('appointment',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('course_id', sa.Uuid(), nullable=False),
    sa.Column('family', sa.String(length=16), nullable=False),
    sa.Column('protocol', sa.String(length=64), nullable=False),
    sa.Column('start', UtcDateTime(), nullable=False),
    sa.Column('end', UtcDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_appointment_course_id'), ['course_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_appointment_patient_id'), ['patient_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('recipient_digest', sa.String(length=64), nullable=True),
    sa.Column('provider_ref', sa.String(length=200), nullable=True),
    sa.Column('error', sa.String(length=64), nullable=True),
    sa.Column('started_at', UtcDateTime(), nullable=False),
    sa.Column('finished_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id', 'attempt', name='uq_delivery_attempt')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_delivery_recipient', ['recipient_digest', 'started_at'], unique=False)

    op.create_table('inbound_reply',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_ref', sa.String(length=64), nullable=False),
    sa.Column('sender_digest', sa.String(length=64), nullable=False),
    sa.Column('meaning', sa.String(length=16), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=True),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('patient_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('due_at', UtcDateTime(), nullable=False),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider_ref', name='uq_inbound_provider_ref')
    )
    with op.batch_alter_table('inbound_reply', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_due', ['status', 'due_at'], unique=False)

    op.create_table('message',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=48), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('subject_id', sa.Uuid(), nullable=True),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('planned_at', UtcDateTime(), nullable=False),
    sa.Column('due_at', UtcDateTime(), nullable=False),
    sa.Column('send_by', UtcDateTime(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claim_token', sa.Uuid(), nullable=True),
    sa.Column('claimed_at', UtcDateTime(), nullable=True),
    sa.Column('sent_at', UtcDateTime(), nullable=True),
    sa.Column('provider_ref', sa.String(length=200), nullable=True),
    sa.Column('last_error', sa.String(length=64), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key', name='uq_message_dedupe')
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_due', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_message_subject', ['subject_id'], unique=False)

    op.create_table('preference',
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('quiet_start', sa.String(length=5), nullable=True),
    sa.Column('quiet_end', sa.String(length=5), nullable=True),
    sa.Column('push_device', sa.String(length=512), nullable=True),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('patient_id')
    )
    _copy_welcomes()
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_patient_id'))

    op.drop_table('notification')


def downgrade() -> None:
    op.create_table('notification',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_event_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_event_id', 'kind', 'channel', name='uq_notification_source')
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_patient_id'), ['patient_id'], unique=False)
    _copy_welcomes_back()

    op.drop_table('preference')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_subject')
        batch_op.drop_index(batch_op.f('ix_message_patient_id'))
        batch_op.drop_index('ix_message_due')

    op.drop_table('message')
    with op.batch_alter_table('inbound_reply', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_due')

    op.drop_table('inbound_reply')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_recipient')
        batch_op.drop_index(batch_op.f('ix_delivery_message_id'))

    op.drop_table('delivery')
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointment_patient_id'))
        batch_op.drop_index(batch_op.f('ix_appointment_course_id'))

    op.drop_table('appointment')


NOTIFICATION = sa.table(
    "notification",
    sa.column("id", sa.Uuid()),
    sa.column("patient_id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("channel", sa.String()),
    sa.column("status", sa.String()),
    sa.column("due_at", UtcDateTime()),
    sa.column("created_at", UtcDateTime()),
    sa.column("source_event_id", sa.String()),
)
MESSAGE = sa.table(
    "message",
    sa.column("id", sa.Uuid()),
    sa.column("patient_id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("step", sa.String()),
    sa.column("channel", sa.String()),
    sa.column("dedupe_key", sa.String()),
    sa.column("facts", sa.JSON()),
    sa.column("planned_at", UtcDateTime()),
    sa.column("due_at", UtcDateTime()),
    sa.column("status", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", UtcDateTime()),
    sa.column("updated_at", UtcDateTime()),
)


def _copy_welcomes() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(NOTIFICATION)).mappings().all()
    if rows:
        bind.execute(
            sa.insert(MESSAGE),
            [
                {
                    "id": row["id"],
                    "patient_id": row["patient_id"],
                    "kind": row["kind"],
                    "step": row["kind"],
                    "channel": row["channel"],
                    "dedupe_key": f"{row['kind']}:{row['patient_id']}:{row['channel']}",
                    "facts": {},
                    "planned_at": row["due_at"],
                    "due_at": row["due_at"],
                    "status": row["status"],
                    "attempts": 0,
                    "created_at": row["created_at"],
                    "updated_at": row["created_at"],
                }
                for row in rows
            ],
        )


def _copy_welcomes_back() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(MESSAGE).where(MESSAGE.c.kind == "welcome")).mappings().all()
    if rows:
        bind.execute(
            sa.insert(NOTIFICATION),
            [
                {
                    "id": row["id"],
                    "patient_id": row["patient_id"],
                    "kind": row["kind"],
                    "channel": row["channel"],
                    "status": "scheduled" if row["status"] == "scheduled" else "sent",
                    "due_at": row["due_at"],
                    "created_at": row["created_at"],
                    "source_event_id": str(row["id"]),
                }
                for row in rows
            ],
        )

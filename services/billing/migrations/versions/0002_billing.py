"""Price book, payment methods, courses, charges and attempts, plans, refunds, the ledger,
chargebacks, webhook events and settlement reports.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from clinic_shared.db import UtcDateTime


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('charge',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('cause_id', sa.Uuid(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('due_at', UtcDateTime(), nullable=True),
    sa.Column('service_at', UtcDateTime(), nullable=True),
    sa.Column('course_id', sa.Uuid(), nullable=True),
    sa.Column('appointment_id', sa.Uuid(), nullable=True),
    sa.Column('plan_id', sa.Uuid(), nullable=True),
    sa.Column('sequence', sa.Integer(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('protocol', sa.String(length=32), nullable=True),
    sa.Column('family', sa.String(length=8), nullable=True),
    sa.Column('ordinal', sa.Integer(), nullable=True),
    sa.Column('infusion_minutes', sa.Integer(), nullable=True),
    sa.Column('price_book_version', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('unknown_outcomes', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.String(length=255), nullable=True),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('refunded_cents', sa.BigInteger(), nullable=False),
    sa.Column('paid_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'cause_id', name='uq_charge_cause')
    )
    with op.batch_alter_table('charge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_charge_course_id'), ['course_id'], unique=False)
        batch_op.create_index('ix_charge_due', ['due_at'], unique=False, postgresql_where=sa.text("status IN ('pending', 'retrying')"), sqlite_where=sa.text("status IN ('pending', 'retrying')"))
        batch_op.create_index('ix_charge_patient', ['patient_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_charge_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_charge_plan_id'), ['plan_id'], unique=False)

    op.create_table('chargeback',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('charge_id', sa.Uuid(), nullable=False),
    sa.Column('payment_id', sa.String(length=255), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('chargeback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chargeback_charge_id'), ['charge_id'], unique=False)

    op.create_table('course',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('protocol', sa.String(length=32), nullable=False),
    sa.Column('family', sa.String(length=8), nullable=False),
    sa.Column('infusions', sa.Integer(), nullable=False),
    sa.Column('booked_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('course', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_course_patient_id'), ['patient_id'], unique=False)

    op.create_table('financing_plan',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('course_id', sa.Uuid(), nullable=True),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('installment_count', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('delinquent_at', UtcDateTime(), nullable=True),
    sa.Column('closed_at', UtcDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('financing_plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_financing_plan_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_financing_plan_status'), ['status'], unique=False)
        batch_op.create_index('uq_plan_course', ['course_id'], unique=True)

    op.create_table('ledger_entry',
    sa.Column('position', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=120), nullable=False),
    sa.Column('charged_cents', sa.BigInteger(), nullable=False),
    sa.Column('paid_cents', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('charge_id', sa.Uuid(), nullable=True),
    sa.Column('plan_id', sa.Uuid(), nullable=True),
    sa.Column('refund_id', sa.Uuid(), nullable=True),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('position'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index('ix_ledger_patient', ['patient_id', 'position'], unique=False)

    op.create_table('payment_method',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('processor_payment_method_id', sa.String(length=255), nullable=False),
    sa.Column('brand', sa.String(length=32), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('exp_month', sa.Integer(), nullable=True),
    sa.Column('exp_year', sa.Integer(), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment_method', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_method_patient_id'), ['patient_id'], unique=False)

    op.create_table('price_book',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', UtcDateTime(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    with op.batch_alter_table('price_book', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_price_book_effective_from'), ['effective_from'], unique=False)

    op.create_table('processor_customer',
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('patient_id')
    )
    op.create_table('settlement_report',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', UtcDateTime(), nullable=False),
    sa.Column('settlement_date', sa.Date(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('outcomes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('webhook_event',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('charge_attempt',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('charge_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('payment_id', sa.String(length=255), nullable=True),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_message', sa.String(length=255), nullable=True),
    sa.Column('attempted_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['charge_id'], ['charge.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('charge_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_charge_attempt_charge_id'), ['charge_id'], unique=False)

    op.create_table('refund',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('charge_id', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('due_at', UtcDateTime(), nullable=True),
    sa.Column('processor_refund_id', sa.String(length=255), nullable=True),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('decided_at', UtcDateTime(), nullable=True),
    sa.Column('unknown_outcomes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['charge_id'], ['charge.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refund_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index('ix_refund_due', ['due_at'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index(batch_op.f('ix_refund_patient_id'), ['patient_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refund_patient_id'))
        batch_op.drop_index('ix_refund_due', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_refund_charge_id'))

    op.drop_table('refund')
    with op.batch_alter_table('charge_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_charge_attempt_charge_id'))

    op.drop_table('charge_attempt')
    op.drop_table('webhook_event')
    op.drop_table('settlement_report')
    op.drop_table('processor_customer')
    with op.batch_alter_table('price_book', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_price_book_effective_from'))

    op.drop_table('price_book')
    with op.batch_alter_table('payment_method', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_method_patient_id'))

    op.drop_table('payment_method')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_patient')
        batch_op.drop_index(batch_op.f('ix_ledger_entry_charge_id'))

    op.drop_table('ledger_entry')
    with op.batch_alter_table('financing_plan', schema=None) as batch_op:
        batch_op.drop_index('uq_plan_course')
        batch_op.drop_index(batch_op.f('ix_financing_plan_status'))
        batch_op.drop_index(batch_op.f('ix_financing_plan_patient_id'))

    op.drop_table('financing_plan')
    with op.batch_alter_table('course', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_course_patient_id'))

    op.drop_table('course')
    with op.batch_alter_table('chargeback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chargeback_charge_id'))

    op.drop_table('chargeback')
    with op.batch_alter_table('charge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_charge_plan_id'))
        batch_op.drop_index(batch_op.f('ix_charge_payment_id'))
        batch_op.drop_index('ix_charge_patient')
        batch_op.drop_index('ix_charge_due', postgresql_where=sa.text("status IN ('pending', 'retrying')"), sqlite_where=sa.text("status IN ('pending', 'retrying')"))
        batch_op.drop_index(batch_op.f('ix_charge_course_id'))

    op.drop_table('charge')

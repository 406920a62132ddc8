"""Events billing publishes on `billing.events`: ids, amounts (integer cents) and times only.

Keyed by patient: one patient's money events (charges, refunds, plans) stay in order. No card
details, no reasons in words, no names.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal
from uuid import UUID

from clinic_shared.contracts.registry import contract
from clinic_shared.envelope import IntegrationEvent

ChargeKindName = Literal[
    "infusion", "consult", "late_cancellation", "no_show", "installment", "payoff"
]


class BillingEvent(IntegrationEvent):
    producer: ClassVar[str] = "billing"

    patient_id: UUID

    def aggregate_key(self) -> str:
        return str(self.patient_id)


@contract
class PaymentSucceeded(BillingEvent):
    """The card paid a charge: notify sends the receipt."""

    event_type: ClassVar[str] = "billing.payment.succeeded.v1"

    charge_id: UUID
    kind: ChargeKindName
    amount_cents: int
    currency: str
    appointment_id: UUID | None = None
    plan_id: UUID | None = None
    paid_at: datetime


@contract
class PaymentFailed(BillingEvent):
    """The card declined a charge; no money moved. `final`: no retry is scheduled."""

    event_type: ClassVar[str] = "billing.payment.failed.v1"

    charge_id: UUID
    kind: ChargeKindName
    amount_cents: int
    currency: str
    failure_code: str
    attempt: int
    final: bool
    next_attempt_at: datetime | None = None
    plan_id: UUID | None = None
    failed_at: datetime


@contract
class RefundIssued(BillingEvent):
    event_type: ClassVar[str] = "billing.refund.issued.v1"

    refund_id: UUID
    charge_id: UUID
    amount_cents: int
    currency: str
    refunded_at: datetime


@contract
class PlanCreated(BillingEvent):
    event_type: ClassVar[str] = "billing.plan.created.v1"

    plan_id: UUID
    course_id: UUID | None = None
    amount_cents: int
    installments: int
    first_due_date: date
    created_at: datetime


@contract
class PlanDelinquent(BillingEvent):
    """An installment failed after every retry: billing staff follow up, notify tells them."""

    event_type: ClassVar[str] = "billing.plan.delinquent.v1"

    plan_id: UUID
    charge_id: UUID
    overdue_cents: int
    delinquent_at: datetime


@contract
class PlanPaid(BillingEvent):
    """Every installment is paid, or the rest was paid off early."""

    event_type: ClassVar[str] = "billing.plan.paid.v1"

    plan_id: UUID
    early_payoff: bool
    paid_at: datetime


@contract
class ChargebackRecorded(BillingEvent):
    event_type: ClassVar[str] = "billing.chargeback.recorded.v1"

    charge_id: UUID
    dispute_id: str
    amount_cents: int
    recorded_at: datetime

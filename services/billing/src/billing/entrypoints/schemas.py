"""Billing's request and response bodies. Money is integer cents; unknown fields are refused."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from clinic_shared.http import AwareDateTimeText

Cents = Annotated[StrictInt, Field(ge=0, le=100_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierIn(_In):
    from_ordinal: StrictInt = Field(ge=1, le=1000)
    cents: Cents


class FeesIn(_In):
    late_cancellation: Cents
    no_show: Cents


class PriceBookIn(_In):
    effective_from: AwareDateTimeText | None = None
    """When the prices apply (now when left out); never in the past."""
    infusions: dict[Literal["mood", "pain"], list[TierIn]]
    consults: dict[Literal["phone_consult", "info_consult"], Cents]
    fees: FeesIn


class PriceBookOut(BaseModel):
    version: int
    effective_from: datetime
    infusions: dict[str, list[dict[str, int]]]
    consults: dict[str, int]
    fees: dict[str, int]
    currency: str
    created_by: str
    created_at: datetime


class PaymentMethodIn(_In):
    processor_token: str = Field(min_length=3, max_length=255)


class PaymentMethodOut(BaseModel):
    id: UUID
    patient_id: UUID
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    created_at: datetime
    is_default: bool
    """Charges go to this card."""


class LedgerEntryOut(BaseModel):
    id: UUID
    kind: str
    description: str
    charged_cents: int
    paid_cents: int
    balance_cents: int
    """The running balance after this entry."""
    created_at: datetime
    charge_id: UUID | None
    plan_id: UUID | None
    refund_id: UUID | None


class LedgerOut(BaseModel):
    patient_id: UUID
    currency: str
    entries: list[LedgerEntryOut]
    charged_cents: int
    paid_cents: int
    balance_cents: int
    """What the patient still owes (charged minus paid)."""


class AttemptOut(BaseModel):
    number: int
    idempotency_key: str
    succeeded: bool
    failure_code: str | None
    failure_message: str | None
    attempted_at: datetime


class ChargeOut(BaseModel):
    id: UUID
    patient_id: UUID
    kind: str
    description: str
    amount_cents: int
    refunded_cents: int
    status: str
    created_at: datetime
    due_at: datetime | None
    paid_at: datetime | None
    service_at: datetime | None
    appointment_id: UUID | None
    course_id: UUID | None
    plan_id: UUID | None
    sequence: int | None
    due_date: date | None
    ordinal: int | None
    price_book_version: int | None
    failure_code: str | None
    payment_id: str | None
    """The processor's id for the payment (for reconciling with its reports)."""
    attempts: list[AttemptOut] | None = None


class PlanIn(_In):
    patient_id: UUID
    course_id: UUID | None = None
    amount_cents: StrictInt | None = Field(default=None, ge=1, le=100_000_000)
    installments: StrictInt = Field(ge=1, le=60)

    @model_validator(mode="after")
    def _one_subject(self) -> PlanIn:
        if (self.course_id is None) == (self.amount_cents is None):
            raise ValueError("give exactly one of course_id and amount_cents")
        return self


class PlanOut(BaseModel):
    id: UUID
    patient_id: UUID
    course_id: UUID | None
    amount_cents: int
    installment_count: int
    apr_percent: int = 0
    status: str
    paid_cents: int
    remaining_cents: int
    created_at: datetime
    delinquent_at: datetime | None
    closed_at: datetime | None
    installments: list[ChargeOut]
    payoff: ChargeOut | None


class PlanSummaryOut(BaseModel):
    id: UUID
    patient_id: UUID
    course_id: UUID | None
    amount_cents: int
    installment_count: int
    status: str
    created_at: datetime
    delinquent_at: datetime | None


class RefundIn(_In):
    charge_id: UUID
    amount_cents: StrictInt = Field(ge=1, le=100_000_000)
    reason: str = Field(min_length=1, max_length=200)


class RefundOut(BaseModel):
    id: UUID
    charge_id: UUID
    patient_id: UUID
    amount_cents: int
    reason: str
    status: str
    requested_by: str
    created_at: datetime
    decided_at: datetime | None
    failure_code: str | None
    processor_refund_id: str | None


class ReportOut(BaseModel):
    id: UUID
    uploaded_by: str
    uploaded_at: datetime
    settlement_date: date | None
    summary: dict[str, Any]
    outcomes: list[dict[str, Any]]


class WebhookEventIn(BaseModel):
    """What billing reads of the processor's event; the rest is kept as sent."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(
        json_schema_extra={"required": ["object"], "properties": {"object": {"type": "object"}}}
    )

    @model_validator(mode="after")
    def _names_its_object(self) -> WebhookEventIn:
        if not isinstance(self.data.get("object"), dict):
            raise ValueError("data.object must be an object")
        return self


class WebhookOut(BaseModel):
    received: bool
    applied: bool
    """False when this event was applied before."""

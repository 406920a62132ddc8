"""Charges, financing plans, refunds and the ledger. Money is integer cents, always.

A **charge** is one amount owed for one cause (a completed infusion, a consult, a late
cancellation or no-show, a plan's installment, a plan's payoff); `(kind, cause_id)` is unique,
so a cause is charged once whatever is redelivered. A charge waiting for the card sits in the
due-queue (`due_at`). Each decided attempt uses a new idempotency key, derived from the charge's
own id and the attempt number; an attempt whose outcome is unknown (timeout, crash) is tried
again with the same key, so the processor never charges twice.

The **ledger** is append-only. Each entry states what it adds to what the patient was charged
and to what they paid; the balance (what they still owe) is charged minus paid. A card payment
adds the same to both; a plan adds its financed amount to `charged` and each installment to
`paid`; a refund takes the same back from both; a chargeback takes money back out of `paid`.
A declined card leaves a failed attempt and no entry.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo


class ChargeKind(StrEnum):
    INFUSION = "infusion"
    CONSULT = "consult"
    LATE_CANCELLATION = "late_cancellation"
    NO_SHOW = "no_show"
    INSTALLMENT = "installment"
    PAYOFF = "payoff"

    @property
    def is_fee(self) -> bool:
        return self in (ChargeKind.LATE_CANCELLATION, ChargeKind.NO_SHOW)


class ChargeStatus(StrEnum):
    PENDING = "pending"
    """Due (or due later): the due-queue charges the card on file."""
    RETRYING = "retrying"
    """An installment the card declined, due again on its next retry date."""
    PAID = "paid"
    FAILED = "failed"
    """Declined for good; no money moved. A pay-as-you-go charge is tried again when the
    patient saves a new card."""
    FINANCED = "financed"
    """An infusion of a course on a financing plan: the plan's installments pay for it."""
    WAIVED = "waived"
    """A fee staff waived before it was paid."""
    CANCELLED = "cancelled"
    """An installment that an early payoff made unnecessary."""


WAITING = frozenset({ChargeStatus.PENDING, ChargeStatus.RETRYING})


@dataclass
class Charge:
    id: UUID
    patient_id: UUID
    kind: ChargeKind
    cause_id: UUID
    amount_cents: int
    description: str
    status: ChargeStatus
    created_at: datetime
    due_at: datetime | None = None
    service_at: datetime | None = None
    course_id: UUID | None = None
    appointment_id: UUID | None = None
    plan_id: UUID | None = None
    sequence: int | None = None
    due_date: date | None = None
    protocol: str | None = None
    family: str | None = None
    ordinal: int | None = None
    infusion_minutes: int | None = None
    price_book_version: int | None = None
    attempts: int = 0
    """Attempts with a decided outcome (paid or declined)."""
    unknown_outcomes: int = 0
    """Attempts since the last decided one whose outcome never came back (for backoff)."""
    payment_id: str | None = None
    failure_code: str | None = None
    refunded_cents: int = 0
    paid_at: datetime | None = None

    def idempotency_key(self) -> str:
        """The key for the next attempt: the same until an attempt's outcome is known."""
        return f"charge-{self.id}-{self.attempts + 1}"

    @property
    def refundable_cents(self) -> int:
        return self.amount_cents - self.refunded_cents if self.status is ChargeStatus.PAID else 0


@dataclass(frozen=True)
class LedgerEntry:
    id: UUID
    patient_id: UUID
    kind: str
    """`charge`, `fee`, `plan`, `installment`, `payoff`, `refund`, `chargeback`."""
    description: str
    charged_cents: int
    paid_cents: int
    created_at: datetime
    charge_id: UUID | None = None
    plan_id: UUID | None = None
    refund_id: UUID | None = None
    reference: str | None = None
    """The processor's id for the money movement (a payment, refund or dispute id)."""


def balance(entries: list[LedgerEntry]) -> int:
    return sum(e.charged_cents - e.paid_cents for e in entries)


class PlanStatus(StrEnum):
    ACTIVE = "active"
    DELINQUENT = "delinquent"
    """An installment failed after every retry; billing staff follow it up."""
    PAID = "paid"


@dataclass
class Plan:
    id: UUID
    patient_id: UUID
    amount_cents: int
    installment_count: int
    status: PlanStatus
    created_at: datetime
    created_by: str
    course_id: UUID | None = None
    delinquent_at: datetime | None = None
    closed_at: datetime | None = None


def split_installments(amount_cents: int, count: int) -> list[int]:
    """Equal installments to the cent; the remainder's cents go on the first installment."""
    if count < 1 or amount_cents < count:
        raise ValueError("an amount of at least one cent per installment is needed")
    base, remainder = divmod(amount_cents, count)
    return [base + remainder] + [base] * (count - 1)


def add_months(start: date, months: int) -> date:
    """The same day of the month `months` later, or that month's last day when it is shorter."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def due_dates(first: date, count: int) -> list[date]:
    return [add_months(first, k) for k in range(count)]


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """When a calendar date in the clinic's zone begins (installments fall due then), in UTC."""
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


def installment_charges(plan: Plan, first_due: date, zone: ZoneInfo, now: datetime) -> list[Charge]:
    amounts = split_installments(plan.amount_cents, plan.installment_count)
    return [
        Charge(
            id=uuid4(),
            patient_id=plan.patient_id,
            kind=ChargeKind.INSTALLMENT,
            cause_id=uuid4(),
            amount_cents=amount,
            description=f"Installment {n} of {plan.installment_count}",
            status=ChargeStatus.PENDING,
            created_at=now,
            due_at=start_of_day(day, zone),
            plan_id=plan.id,
            sequence=n,
            due_date=day,
        )
        for n, (amount, day) in enumerate(
            zip(amounts, due_dates(first_due, plan.installment_count), strict=True), start=1
        )
    ]


def next_retry(charge: Charge, offsets_days: list[int], zone: ZoneInfo) -> datetime | None:
    """When a declined installment is tried again, or None when its retries are spent."""
    if charge.due_date is None or charge.attempts > len(offsets_days):
        return None
    return start_of_day(charge.due_date + timedelta(days=offsets_days[charge.attempts - 1]), zone)


def unknown_outcome_backoff(unknown_outcomes: int) -> timedelta:
    """How long to wait before asking again about an attempt whose outcome never came back."""
    return timedelta(seconds=min(30 * 2 ** (unknown_outcomes - 1), 3600))


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Refund:
    id: UUID
    charge_id: UUID
    patient_id: UUID
    amount_cents: int
    reason: str
    status: RefundStatus
    requested_by: str
    created_at: datetime
    due_at: datetime | None
    processor_refund_id: str | None = None
    failure_code: str | None = None
    decided_at: datetime | None = None
    unknown_outcomes: int = 0

    def idempotency_key(self) -> str:
        return f"refund-{self.id}"


@dataclass(frozen=True)
class SavedPaymentMethod:
    id: UUID
    patient_id: UUID
    customer_id: str
    processor_payment_method_id: str
    brand: str
    last4: str
    created_at: datetime
    exp_month: int | None = None
    exp_year: int | None = None
    is_default: bool = True


@dataclass(frozen=True)
class Statement:
    patient_id: UUID
    entries: list[LedgerEntry] = field(default_factory=list)

    @property
    def balance_cents(self) -> int:
        return balance(self.entries)

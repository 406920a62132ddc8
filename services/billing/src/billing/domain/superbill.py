"""The superbill: the statement a self-paying patient sends to their insurer for reimbursement.

The clinic does not bill insurers. A patient pays the clinic, then downloads a superbill for a
period and files it as an out-of-network claim. The insurer needs the clinic and rendering
provider (with their NPIs), the patient, the diagnosis codes (ICD-10-CM), and for each date of
service the procedure codes (CPT) with units, the amount charged and the amount paid.

Money is integer cents (USD) here; it becomes "$1,234.56" only when the document is rendered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

from clinic_shared.policy import ClinicPolicy

CPT_INFUSION_INITIAL_HOUR = "96365"
"""IV infusion for therapy, prophylaxis or diagnosis; initial, up to 1 hour."""
CPT_INFUSION_ADDITIONAL_HOUR = "96366"
"""IV infusion for therapy, prophylaxis or diagnosis; each additional hour."""

_MIN_INFUSION_MINUTES = 16
"""An infusion must last more than 15 minutes to be reported as an infusion at all."""
_HOUR = 60
_HALF_HOUR = 30


@dataclass(frozen=True)
class CptLine:
    """One procedure code of a date of service and how many units of it were given."""

    code: str
    units: int

    def __post_init__(self) -> None:
        if self.units < 1:
            raise ValueError(f"CPT {self.code}: units must be at least 1, got {self.units}")


def cpt_units(infusion_minutes: int) -> list[CptLine]:
    """The CPT codes and units an IV infusion of `infusion_minutes` is reported with.

    CPT's time rules for hydration/therapeutic infusions, which payers apply to claims:

    - 96365 covers the first hour and is reported once, but only when the infusion lasted
      more than 15 minutes. CPT counts 15 minutes or less as an IV push (96374), not an
      infusion; a session cut that short is not a billable infusion here, so it gets no code
      rather than one the insurer would reject.
    - 96366 is reported once per full hour beyond the first, and once more when the time
      left over after the last full hour is *more than* 30 minutes: a unit of time is earned
      only when its midpoint has been passed, so exactly 30 minutes does not count.

    So 16-90 minutes is 96365 alone; 91-150 adds one 96366; 240 is 96365 + 96366 x 3 (three
    full additional hours); 271 is 96365 + 96366 x 4.
    """
    if infusion_minutes < 0:
        raise ValueError(f"infusion minutes cannot be negative, got {infusion_minutes}")
    if infusion_minutes < _MIN_INFUSION_MINUTES:
        return []
    lines = [CptLine(CPT_INFUSION_INITIAL_HOUR, 1)]
    beyond_first_hour = infusion_minutes - _HOUR
    if beyond_first_hour > 0:
        full_hours, remainder = divmod(beyond_first_hour, _HOUR)
        additional = full_hours + (1 if remainder > _HALF_HOUR else 0)
        if additional:
            lines.append(CptLine(CPT_INFUSION_ADDITIONAL_HOUR, additional))
    return lines


@dataclass(frozen=True)
class SuperbillPatient:
    patient_id: UUID
    first_name: str
    last_name: str
    date_of_birth: date | None

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


@dataclass(frozen=True)
class ServiceLine:
    """One visit: what was done on a date of service (clinic-local), charged and paid."""

    date_of_service: date
    description: str
    """What the patient would recognise, e.g. "IV infusion, 60 min"."""
    cpt_lines: Sequence[CptLine]
    charged_cents: int
    paid_cents: int
    note: str = ""
    """e.g. "financed" when the visit is being paid in installments; empty otherwise."""

    def __post_init__(self) -> None:
        # A tuple, so the document cannot change after the totals were read from it.
        object.__setattr__(self, "cpt_lines", tuple(self.cpt_lines))
        if self.charged_cents < 0:
            raise ValueError(f"charged amount cannot be negative, got {self.charged_cents}")


@dataclass(frozen=True)
class PaymentLine:
    """Money received in the period, e.g. "Installment 2 of 6" or "Card payment"."""

    paid_on: date
    description: str
    amount_cents: int


@dataclass(frozen=True)
class SuperbillDocument:
    clinic: ClinicPolicy
    patient: SuperbillPatient
    diagnosis_codes: Sequence[str]
    """ICD-10-CM codes on file for the patient, e.g. "F33.2"."""
    period_from: date
    period_to: date
    """Inclusive, like the dates of service it bounds."""
    service_lines: Sequence[ServiceLine]
    issued_on: date
    payments: Sequence[PaymentLine] = field(default=())

    def __post_init__(self) -> None:
        for name in ("diagnosis_codes", "service_lines", "payments"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.period_to < self.period_from:
            raise ValueError(f"the period ends ({self.period_to}) before it starts")

    @property
    def total_charged_cents(self) -> int:
        return sum(line.charged_cents for line in self.service_lines)

    @property
    def total_paid_cents(self) -> int:
        """Paid towards the services listed (whenever it was received)."""
        return sum(line.paid_cents for line in self.service_lines)

    @property
    def balance_cents(self) -> int:
        """Still owed by the patient for the services listed, e.g. on a payment plan."""
        return self.total_charged_cents - self.total_paid_cents

    @property
    def total_received_cents(self) -> int:
        """Received within the period; installments may pay for services of earlier periods."""
        return sum(payment.amount_cents for payment in self.payments)

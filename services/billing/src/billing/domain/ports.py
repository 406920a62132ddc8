"""What billing needs from outside: the card processor and booking's patient directory.

No card number ever enters the system. A patient's card is saved at the processor (its own
form or SDK turns the number into a token); we keep the processor's ids, the brand and the
last four digits, and charge the saved card off-session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol
from uuid import UUID


class CardRejected(Exception):
    """The processor refused to save a card (unknown token, a card it cannot use)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GatewayUnavailable(Exception):
    """The processor could not be reached or failed on its side: safe to try again later."""


@dataclass(frozen=True)
class SavedCard:
    customer_id: str
    payment_method_id: str
    brand: str
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class PaymentResult:
    """A charge's answer. A decline is a result, not an exception: it is recorded."""

    succeeded: bool
    payment_id: str | None
    """The processor's id for the payment (a Stripe PaymentIntent id), also on a decline."""
    failure_code: str | None = None
    """`card_declined`, `insufficient_funds`, `expired_card`, `authentication_required`, ..."""
    failure_message: str | None = None


@dataclass(frozen=True)
class RefundResult:
    succeeded: bool
    refund_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None


class CardGateway(Protocol):
    name: str

    async def save_card(
        self, *, patient_id: UUID, token: str, customer_id: str | None
    ) -> SavedCard:
        """Attach the processor token to the patient's customer (created when `None`).

        Raises `CardRejected` for a token the processor will not save, `GatewayUnavailable`
        when it cannot be reached."""
        ...

    async def charge(
        self,
        *,
        amount_cents: int,
        currency: str,
        customer_id: str,
        payment_method_id: str,
        idempotency_key: str,
        charge_id: UUID,
    ) -> PaymentResult:
        """Charge a saved card off-session. The same `idempotency_key` never charges twice.

        Raises `GatewayUnavailable` when the outcome is unknown (timeout, 5xx): the caller
        tries again later with the same key."""
        ...

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str, refund_id: UUID
    ) -> RefundResult:
        """Return part or all of a payment to the card. Same key: one refund."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PatientRecord:
    """What a superbill prints about the patient, from booking's internal API."""

    patient_id: UUID
    first_name: str
    last_name: str
    date_of_birth: date | None
    diagnosis_codes: list[str] = field(default_factory=list)


class PatientDirectory(Protocol):
    async def lookup(self, patient_id: UUID) -> PatientRecord | None: ...

    async def close(self) -> None: ...

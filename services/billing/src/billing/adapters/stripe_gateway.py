"""Stripe as the card gateway, through the official SDK's async client.

Only ids and amounts go to Stripe: a customer carries our patient id, a payment our charge id,
never a name, an email or anything that names the treatment. The card statement shows the
account's statement descriptor (set in the Stripe dashboard): keep it neutral as well; Stripe
refuses a per-charge ``statement_descriptor`` for cards.
"""

from __future__ import annotations

from uuid import UUID

import stripe

from billing.domain.ports import (
    CardRejected,
    GatewayUnavailable,
    PaymentResult,
    RefundResult,
    SavedCard,
)

CHARGE_DESCRIPTION = "Clinic services"
DECLINED_MESSAGE = "The card was declined."
AUTHENTICATION_MESSAGE = "The card issuer asks the cardholder to authenticate this payment."
_DECLINE_MESSAGES = {
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "authentication_required": AUTHENTICATION_MESSAGE,
}


class StripeGateway:
    name = "stripe"

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.stripe.com",
        timeout: float = 10.0,
        max_network_retries: int = 0,
    ) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base_url},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def save_card(
        self, *, patient_id: UUID, token: str, customer_id: str | None
    ) -> SavedCard:
        try:
            if customer_id is None:
                customer = await self._client.v1.customers.create_async(
                    {"metadata": {"patient_id": str(patient_id)}},
                    {"idempotency_key": f"customer-{patient_id}"},
                )
                customer_id = customer.id
            method = await self._client.v1.payment_methods.attach_async(
                token,
                {"customer": customer_id},
                {"idempotency_key": f"attach-{customer_id}-{token}"},
            )
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            raise CardRejected(
                exc.code or "invalid_processor_token", exc.user_message or DECLINED_MESSAGE
            ) from exc
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe could not save the card: {exc!r}") from exc
        # only a card PaymentMethod carries a `card` field, and the SDK raises on a missing one
        card: stripe.PaymentMethod.Card | None = getattr(method, "card", None)
        if card is None:
            raise CardRejected("invalid_processor_token", "The token is not a card.")
        return SavedCard(
            customer_id=customer_id,
            payment_method_id=method.id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

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
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": amount_cents,
                    "currency": currency,
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "description": CHARGE_DESCRIPTION,
                    "metadata": {"charge_id": str(charge_id)},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return payment_result_from_card_error(exc)
        except stripe.InvalidRequestError as exc:
            # a 400/404 means Stripe did nothing, and the same key would get the same answer
            return PaymentResult(
                succeeded=False,
                payment_id=None,
                failure_code=exc.code or "invalid_request",
                failure_message="The card could not be charged.",
            )
        except stripe.StripeError as exc:
            # 5xx, timeouts, rate limits, and also an idempotency conflict: the card may have
            # been charged, so the outcome is unknown rather than failed
            raise GatewayUnavailable(f"Stripe charge outcome unknown: {exc!r}") from exc
        return payment_result_from_intent(intent)

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str, refund_id: UUID
    ) -> RefundResult:
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": payment_id,
                    "amount": amount_cents,
                    "metadata": {"refund_id": str(refund_id)},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            # already refunded, more than what is left: Stripe refused and did nothing
            return RefundResult(
                succeeded=False,
                refund_id=None,
                failure_code=exc.code or "invalid_request",
                failure_message="The refund was refused.",
            )
        except stripe.StripeError as exc:
            raise GatewayUnavailable(f"Stripe refund outcome unknown: {exc!r}") from exc
        # pending: Stripe accepted it; a later failure arrives as a `refund.failed` webhook
        if refund.status in ("succeeded", "pending"):
            return RefundResult(succeeded=True, refund_id=refund.id)
        return RefundResult(
            succeeded=False,
            refund_id=refund.id,
            failure_code=getattr(refund, "failure_reason", None) or refund.status or "failed",
            failure_message="The refund failed.",
        )

    async def close(self) -> None:
        await self._http.close_async()


def payment_result_from_card_error(error: stripe.CardError) -> PaymentResult:
    """A decline: Stripe answers 402 and has usually created a PaymentIntent for it."""
    details = error.error
    intent = details.payment_intent if details is not None else None
    decline_code = details.decline_code if details is not None else None
    return _declined(intent.id if intent is not None else None, decline_code or error.code)


def payment_result_from_intent(intent: stripe.PaymentIntent) -> PaymentResult:
    if intent.status == "succeeded":
        return PaymentResult(succeeded=True, payment_id=intent.id)
    if intent.status == "requires_action":
        return _declined(intent.id, "authentication_required")
    # Stripe omits null fields from this object, and the SDK raises on a missing attribute
    last_error = intent.last_payment_error
    code = getattr(last_error, "decline_code", None) or getattr(last_error, "code", None)
    return _declined(intent.id, code or intent.status)


def _declined(payment_id: str | None, code: str | None) -> PaymentResult:
    # our own wording: Stripe's messages may mention test mode, the issuer or the account
    if code in (None, "generic_decline"):
        code = "card_declined"
    return PaymentResult(
        succeeded=False,
        payment_id=payment_id,
        failure_code=code,
        failure_message=_DECLINE_MESSAGES.get(code, DECLINED_MESSAGE),
    )

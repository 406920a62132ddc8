"""Saved cards: the processor's token in, its customer and payment method ids, brand and last
four digits stored. A card number is refused before it goes anywhere."""

from __future__ import annotations

import re
import uuid
from uuid import UUID

from billing.domain.model import SavedPaymentMethod
from billing.domain.ports import CardGateway, CardRejected, GatewayUnavailable
from billing.service_layer.charges import repository, retry_failed_charges
from clinic_shared.problems import ProblemError
from clinic_shared.refusals import InvalidRequest
from clinic_shared.uow import UnitOfWorkFactory

_LOOKS_LIKE_A_CARD_NUMBER = re.compile(r"[\d\s-]{12,}")


async def save_card(
    patient_id: UUID, token: str, gateway: CardGateway, uow_factory: UnitOfWorkFactory
) -> SavedPaymentMethod:
    if _LOOKS_LIKE_A_CARD_NUMBER.fullmatch(token.strip()):
        raise InvalidRequest(
            "card_number_not_accepted",
            "Send the processor's token for the card, never the card number.",
        )
    async with uow_factory() as uow:
        customer_id = await repository(uow).customer_id(patient_id)
    try:
        saved = await gateway.save_card(patient_id=patient_id, token=token, customer_id=customer_id)
    except CardRejected as exc:
        raise InvalidRequest(exc.code, exc.message) from exc
    except GatewayUnavailable as exc:
        raise ProblemError(
            503, "processor_unavailable", "Service unavailable", "The card processor did not "
            "answer; try again shortly.",
        ) from exc  # fmt: skip
    async with uow_factory() as uow:
        repo = repository(uow)
        now = uow.clock.now()
        await repo.save_customer(patient_id, saved.customer_id, now)
        existing = next(
            (
                m
                for m in await repo.payment_methods(patient_id)
                if m.processor_payment_method_id == saved.payment_method_id
            ),
            None,
        )
        if existing is not None:
            return existing
        method = SavedPaymentMethod(
            id=uuid.uuid4(),
            patient_id=patient_id,
            customer_id=saved.customer_id,
            processor_payment_method_id=saved.payment_method_id,
            brand=saved.brand,
            last4=saved.last4,
            created_at=now,
            exp_month=saved.exp_month,
            exp_year=saved.exp_year,
        )
        await repo.add_payment_method(method)
        await retry_failed_charges(patient_id, uow)
        await uow.commit()
        return method

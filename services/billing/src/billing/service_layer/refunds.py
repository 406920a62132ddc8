"""Refunds, partial or full: requested by billing staff (or by a fee waived after payment),
submitted to the processor by the dispatcher with the refund's own idempotency key."""

from __future__ import annotations

import uuid
from uuid import UUID

from billing.domain.model import LedgerEntry, Refund, RefundStatus, unknown_outcome_backoff
from billing.domain.ports import CardGateway, GatewayUnavailable
from billing.service_layer.charges import currency, repository, request_refund
from clinic_shared.contracts import billing
from clinic_shared.logging import get_logger
from clinic_shared.refusals import Conflict, InvalidRequest, NotFound
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)


async def refund(
    charge_id: UUID, amount_cents: int, reason: str, requested_by: str, uow: SqlUnitOfWork
) -> Refund:
    repo = repository(uow)
    charge = await repo.get_charge(charge_id, for_update=True)
    if charge is None:
        raise NotFound("charge")
    if charge.refundable_cents == 0 or charge.payment_id is None:
        raise Conflict("charge_not_paid", "Only a paid charge can be refunded.")
    promised = sum(
        r.amount_cents
        for r in await repo.refunds_for(charge.id)
        if r.status is not RefundStatus.FAILED
    )
    left = charge.amount_cents - promised
    if amount_cents > left:
        raise InvalidRequest(
            "refund_exceeds_charge",
            f"At most {left} cents of this charge can still be refunded.",
            refundable_cents=left,
        )
    return await request_refund(charge, amount_cents, reason, requested_by, uow)


async def get_refund(refund_id: UUID, uow: SqlUnitOfWork) -> Refund:
    found = await repository(uow).get_refund(refund_id)
    if found is None:
        raise NotFound("refund")
    return found


class RefundSubmissions:
    """The due-queue of pending refunds: each is submitted to the processor once in effect."""

    name = "refunds"

    def __init__(self, gateway: CardGateway) -> None:
        self.gateway = gateway

    async def close(self) -> None:
        await self.gateway.close()

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            repo = repository(uow)
            now = uow.clock.now()
            refund = await repo.claim_due_refund(now)
            if refund is None:
                return False
            charge = await repo.get_charge(refund.charge_id, for_update=True)
            assert charge is not None and charge.payment_id is not None
            try:
                result = await self.gateway.refund(
                    payment_id=charge.payment_id,
                    amount_cents=refund.amount_cents,
                    idempotency_key=refund.idempotency_key(),
                    refund_id=refund.id,
                )
            except GatewayUnavailable:
                refund.unknown_outcomes += 1
                refund.due_at = now + unknown_outcome_backoff(refund.unknown_outcomes)
                await repo.save_refund(refund)
                await uow.commit()
                return True
            refund.decided_at, refund.due_at = now, None
            if result.succeeded:
                refund.status, refund.processor_refund_id = RefundStatus.SUCCEEDED, result.refund_id
                charge.refunded_cents += refund.amount_cents
                await repo.save_charge(charge)
                await repo.append(
                    LedgerEntry(
                        id=uuid.uuid4(),
                        patient_id=refund.patient_id,
                        kind="refund",
                        description=f"Refund: {charge.description}",
                        charged_cents=-refund.amount_cents,
                        paid_cents=-refund.amount_cents,
                        created_at=now,
                        charge_id=charge.id,
                        plan_id=charge.plan_id,
                        refund_id=refund.id,
                        reference=result.refund_id,
                    )
                )
                await uow.publish(
                    billing.RefundIssued(
                        patient_id=refund.patient_id,
                        refund_id=refund.id,
                        charge_id=charge.id,
                        amount_cents=refund.amount_cents,
                        currency=currency(uow),
                        refunded_at=now,
                    )
                )
            else:
                refund.status, refund.failure_code = RefundStatus.FAILED, result.failure_code
                log.warning("refund failed", refund_id=str(refund.id), code=result.failure_code)
            await repo.save_refund(refund)
            await uow.commit()
            return True

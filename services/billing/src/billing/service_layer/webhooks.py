"""The processor's webhooks, applied once by event id (a repeat changes nothing).

- `payment_intent.succeeded`: a charge whose answer we never recorded (the process died, or
  the processor timed out) is paid;
- `charge.dispute.created`: a chargeback; the money leaves the patient's paid total;
- anything else is acknowledged and kept by id only.
"""

from __future__ import annotations

import uuid
from typing import Any

from billing.domain.model import WAITING, LedgerEntry
from billing.domain.ports import PaymentResult
from billing.service_layer.charges import record_result, repository
from clinic_shared.contracts import billing
from clinic_shared.logging import get_logger
from clinic_shared.refusals import InvalidRequest
from clinic_shared.uow import SqlUnitOfWork

log = get_logger(__name__)


async def apply(event: dict[str, Any], uow: SqlUnitOfWork) -> bool:
    """False when this event id was applied before."""
    event_id, event_type = event.get("id"), event.get("type")
    subject = (event.get("data") or {}).get("object")
    if (
        not isinstance(event_id, str)
        or not isinstance(event_type, str)
        or not isinstance(subject, dict)
    ):
        raise InvalidRequest("malformed_webhook", "An event needs an id, a type and data.object.")
    repo = repository(uow)
    if not await repo.claim_webhook_event(event_id, event_type, uow.clock.now()):
        return False
    if event_type == "payment_intent.succeeded":
        await _payment_succeeded(subject, uow)
    elif event_type == "charge.dispute.created":
        await _dispute_created(subject, uow)
    return True


async def _payment_succeeded(payment: dict[str, Any], uow: SqlUnitOfWork) -> None:
    repo = repository(uow)
    raw_id = (payment.get("metadata") or {}).get("charge_id")
    try:
        charge_id = uuid.UUID(str(raw_id))
    except ValueError:
        return
    charge = await repo.get_charge(charge_id, for_update=True)
    if charge is None or charge.status not in WAITING:
        return
    await record_result(charge, PaymentResult(True, str(payment.get("id"))), uow)


async def _dispute_created(dispute: dict[str, Any], uow: SqlUnitOfWork) -> None:
    repo = repository(uow)
    payment_id, dispute_id = dispute.get("payment_intent"), dispute.get("id")
    amount = dispute.get("amount")
    if not isinstance(payment_id, str) or not isinstance(dispute_id, str):
        return
    charges = await repo.charges_by_payment_ids([payment_id])
    if not charges or not isinstance(amount, int) or amount <= 0:
        log.warning("dispute for an unknown payment", dispute_id=dispute_id)
        return
    charge, now = charges[0], uow.clock.now()
    recorded = await repo.add_chargeback(
        {
            "id": dispute_id,
            "charge_id": charge.id,
            "payment_id": payment_id,
            "amount_cents": amount,
            "reason": str(dispute.get("reason") or "unknown")[:64],
            "created_at": now,
        }
    )
    if not recorded:
        return
    await repo.append(
        LedgerEntry(
            id=uuid.uuid4(),
            patient_id=charge.patient_id,
            kind="chargeback",
            description=f"Chargeback: {charge.description}",
            charged_cents=0,
            paid_cents=-amount,
            created_at=now,
            charge_id=charge.id,
            plan_id=charge.plan_id,
            reference=dispute_id,
        )
    )
    await uow.publish(
        billing.ChargebackRecorded(
            patient_id=charge.patient_id,
            charge_id=charge.id,
            dispute_id=dispute_id,
            amount_cents=amount,
            recorded_at=now,
        )
    )

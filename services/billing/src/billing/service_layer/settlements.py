"""Reconciliation: the processor's settlement report against our ledger, a report per upload."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date
from typing import Any
from uuid import UUID

from billing.domain.model import ChargeStatus
from billing.domain.reconciliation import (
    LedgerTransaction,
    ReconciliationResult,
    SettlementFormatError,
    parse_settlement,
    reconcile,
)
from billing.service_layer.charges import repository
from clinic_shared.refusals import InvalidRequest, NotFound
from clinic_shared.uow import SqlUnitOfWork


async def _ledger_transactions(
    lines_ids: set[str], window: tuple[Any, Any] | None, uow: SqlUnitOfWork
) -> list[LedgerTransaction]:
    """Our payments, refunds and chargebacks in the window, and any the report names."""
    repo = repository(uow)
    charges = {c.id: c for c in await repo.charges_by_payment_ids(sorted(lines_ids))}
    refunds = {r.id: r for r in await repo.refunds_by_processor_ids(sorted(lines_ids))}
    if window is not None:
        charges.update({c.id: c for c in await repo.payments_between(*window)})
        refunds.update({r.id: r for r in await repo.refunds_between(*window)})
    transactions = [
        LedgerTransaction("payment", c.payment_id, None, c.amount_cents, c.paid_at, str(c.id))
        for c in charges.values()
        if c.status is ChargeStatus.PAID and c.payment_id and c.paid_at
    ]
    paid_by = {c.id: c.payment_id for c in charges.values()}
    for r in refunds.values():
        if r.processor_refund_id and r.decided_at:
            charge = await repo.get_charge(r.charge_id)
            payment = paid_by.get(r.charge_id) or (charge.payment_id if charge else None)
            transactions.append(
                LedgerTransaction(
                    "refund",
                    r.processor_refund_id,
                    payment,
                    r.amount_cents,
                    r.decided_at,
                    str(r.id),
                )
            )
    for cb in await repo.chargebacks_for(
        sorted({t.processor_id for t in transactions} | lines_ids)
    ):
        transactions.append(
            LedgerTransaction(
                "chargeback",
                cb.id,
                cb.payment_id,
                cb.amount_cents,
                cb.created_at,
                str(cb.charge_id),
            )
        )
    return transactions


async def upload(
    text: str, settlement_date: date | None, uploaded_by: str, uow: SqlUnitOfWork
) -> dict[str, Any]:
    try:
        lines = parse_settlement(text)
    except SettlementFormatError as exc:
        raise InvalidRequest(
            "invalid_settlement_report", "The settlement report cannot be read.",
            problems=exc.problems[:100],
        ) from exc  # fmt: skip
    window = (
        (min(ln.created_utc for ln in lines), max(ln.created_utc for ln in lines))
        if lines
        else None
    )
    named = {i for ln in lines for i in (ln.source_id, ln.payment_intent_id) if i}
    result = reconcile(lines, await _ledger_transactions(named, window, uow), window)
    report = {
        "id": uuid.uuid4(),
        "uploaded_by": uploaded_by,
        "uploaded_at": uow.clock.now(),
        "settlement_date": settlement_date,
        "summary": _summary(result),
        "outcomes": [_outcome(o) for o in result.outcomes],
    }
    await repository(uow).add_settlement_report(report)
    return report


def _summary(result: ReconciliationResult) -> dict[str, Any]:
    summary = dataclasses.asdict(result.summary)
    summary["counts"] = {str(k): v for k, v in result.summary.counts.items()}
    summary["window"] = [t.isoformat() for t in result.window] if result.window else None
    summary["clean"] = result.is_clean
    return summary


def _outcome(outcome: Any) -> dict[str, Any]:
    values = dataclasses.asdict(outcome)
    values["difference_cents"] = outcome.difference_cents
    return values


async def get_report(report_id: UUID, uow: SqlUnitOfWork) -> dict[str, Any]:
    row = await repository(uow).get_settlement_report(report_id)
    if row is None:
        raise NotFound("report")
    return dict(row._mapping)

"""What a patient sees of their money: the ledger and balance, charges, and the superbill."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from billing.adapters.superbill_pdf import render_superbill
from billing.domain.model import (
    Charge,
    ChargeKind,
    ChargeStatus,
    LedgerEntry,
    SavedPaymentMethod,
    Statement,
    start_of_day,
)
from billing.domain.ports import PatientDirectory
from billing.domain.superbill import (
    PaymentLine,
    ServiceLine,
    SuperbillDocument,
    SuperbillPatient,
    cpt_units,
)
from billing.service_layer.charges import repository
from clinic_shared.refusals import InvalidRequest, NotFound
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory

MAX_SUPERBILL_DAYS = 366


async def statement(patient_id: UUID, uow: SqlUnitOfWork) -> Statement:
    return Statement(patient_id, await repository(uow).ledger(patient_id))


async def payment_methods(patient_id: UUID, uow: SqlUnitOfWork) -> list[SavedPaymentMethod]:
    return await repository(uow).payment_methods(patient_id)


async def charges(
    uow: SqlUnitOfWork,
    *,
    patient_id: UUID | None = None,
    statuses: Sequence[ChargeStatus] = (),
    limit: int = 500,
) -> list[Charge]:
    return await repository(uow).charges(patient_id=patient_id, statuses=statuses, limit=limit)


async def charge_with_attempts(
    charge_id: UUID, uow: SqlUnitOfWork
) -> tuple[Charge, list[dict[str, Any]]]:
    repo = repository(uow)
    charge = await repo.get_charge(charge_id)
    if charge is None:
        raise NotFound("charge")
    return charge, [dict(row._mapping) for row in await repo.attempts(charge_id)]


def _service_line(charge: Charge, zone: ZoneInfo) -> ServiceLine:
    assert charge.service_at is not None
    financed = charge.status is ChargeStatus.FINANCED
    paid = charge.amount_cents - charge.refunded_cents if charge.status is ChargeStatus.PAID else 0
    minutes = charge.infusion_minutes or 0
    return ServiceLine(
        date_of_service=charge.service_at.astimezone(zone).date(),
        description=f"IV infusion, {minutes} min"
        if charge.kind is ChargeKind.INFUSION
        else charge.description,
        cpt_lines=cpt_units(minutes) if charge.kind is ChargeKind.INFUSION else [],
        charged_cents=charge.amount_cents - charge.refunded_cents,
        paid_cents=paid,
        note="financed" if financed else "",
    )


async def superbill(
    patient_id: UUID,
    period_from: date,
    period_to: date,
    directory: PatientDirectory,
    uow_factory: UnitOfWorkFactory,
) -> bytes:
    if period_to < period_from or (period_to - period_from).days > MAX_SUPERBILL_DAYS:
        raise InvalidRequest(
            "invalid_period", f"`from` must not be after `to`, at most {MAX_SUPERBILL_DAYS} days."
        )
    record = await directory.lookup(patient_id)
    if record is None:
        raise NotFound("patient")
    policy = uow_factory.policy
    zone = policy.clinic.tz
    start = start_of_day(period_from, zone)
    end = start_of_day(period_to + timedelta(days=1), zone)
    async with uow_factory() as uow:
        repo = repository(uow)
        services = await repo.charges(
            patient_id=patient_id,
            kinds=[ChargeKind.INFUSION, ChargeKind.CONSULT],
            statuses=[ChargeStatus.PAID, ChargeStatus.FINANCED],
            service_between=(start, end),
        )
        entries = await repo.ledger(patient_id)
        issued_on = uow.clock.now().astimezone(zone).date()
    payments = [
        _payment_line(e, zone) for e in entries if e.paid_cents > 0 and start <= e.created_at < end
    ]
    document = SuperbillDocument(
        clinic=policy.clinic,
        patient=SuperbillPatient(
            patient_id, record.first_name, record.last_name, record.date_of_birth
        ),
        diagnosis_codes=record.diagnosis_codes,
        period_from=period_from,
        period_to=period_to,
        service_lines=[_service_line(c, zone) for c in sorted(services, key=_service_time)],
        issued_on=issued_on,
        payments=payments,
    )
    return render_superbill(document)


def _service_time(charge: Charge) -> datetime:
    assert charge.service_at is not None
    return charge.service_at


def _payment_line(entry: LedgerEntry, zone: ZoneInfo) -> PaymentLine:
    return PaymentLine(
        paid_on=entry.created_at.astimezone(zone).date(),
        description=entry.description,
        amount_cents=entry.paid_cents,
    )

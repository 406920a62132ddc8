"""Billing's repository over SQL: price books, cards, courses, charges, plans, refunds, ledger.

Locks: a charge's row lock is taken before its plan's; the due-queues claim rows with
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several dispatchers never work one row at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing.adapters.orm import (
    ChargeAttemptRow,
    ChargebackRow,
    ChargeRow,
    CourseRow,
    CustomerRow,
    LedgerEntryRow,
    PaymentMethodRow,
    PlanRow,
    PriceBookRow,
    RefundRow,
    SettlementReportRow,
    WebhookEventRow,
)
from billing.domain.model import (
    Charge,
    ChargeKind,
    ChargeStatus,
    LedgerEntry,
    Plan,
    PlanStatus,
    Refund,
    RefundStatus,
    SavedPaymentMethod,
)
from billing.domain.pricing import PriceBook, Tier

PRICE_BOOK = PriceBookRow.__table__
CUSTOMER = CustomerRow.__table__
PAYMENT_METHOD = PaymentMethodRow.__table__
COURSE = CourseRow.__table__
CHARGE = ChargeRow.__table__
ATTEMPT = ChargeAttemptRow.__table__
PLAN = PlanRow.__table__
REFUND = RefundRow.__table__
LEDGER = LedgerEntryRow.__table__
CHARGEBACK = ChargebackRow.__table__
WEBHOOK = WebhookEventRow.__table__
SETTLEMENT = SettlementReportRow.__table__

WAITING_VALUES = (ChargeStatus.PENDING.value, ChargeStatus.RETRYING.value)


def _price_book(row: Any) -> PriceBook:
    document = row.document
    return PriceBook(
        version=row.version,
        effective_from=row.effective_from,
        infusions={
            family: tuple(Tier(t["from_ordinal"], t["cents"]) for t in tiers)
            for family, tiers in document["infusions"].items()
        },
        consults=document["consults"],
        fees=document["fees"],
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _charge(row: Any) -> Charge:
    values = dict(row._mapping)
    values["kind"] = ChargeKind(values["kind"])
    values["status"] = ChargeStatus(values["status"])
    return Charge(**values)


def _plan(row: Any) -> Plan:
    values = dict(row._mapping)
    values["status"] = PlanStatus(values["status"])
    return Plan(**values)


def _refund(row: Any) -> Refund:
    values = dict(row._mapping)
    values["status"] = RefundStatus(values["status"])
    return Refund(**values)


def _entry(row: Any) -> LedgerEntry:
    values = dict(row._mapping)
    values.pop("position")
    return LedgerEntry(**values)


class BillingRepository:
    def __init__(self, session: AsyncSession, *, postgres: bool) -> None:
        self._session = session
        self._postgres = postgres

    async def _one(self, statement: sa.Select[Any]) -> Any:
        return (await self._session.execute(statement)).first()

    def _locked(self, statement: sa.Select[Any], *, skip: bool = False) -> sa.Select[Any]:
        if not self._postgres:
            return statement  # SQLite serializes writers on its own
        return statement.with_for_update(skip_locked=skip)

    # price book ------------------------------------------------------------------------------

    async def price_book_at(self, instant: datetime) -> PriceBook | None:
        row = await self._one(
            sa.select(PRICE_BOOK)
            .where(PRICE_BOOK.c.effective_from <= instant)
            .order_by(PRICE_BOOK.c.effective_from.desc(), PRICE_BOOK.c.version.desc())
            .limit(1)
        )
        return None if row is None else _price_book(row)

    async def price_books(self) -> list[PriceBook]:
        rows = await self._session.execute(sa.select(PRICE_BOOK).order_by(PRICE_BOOK.c.version))
        return [_price_book(row) for row in rows]

    async def add_price_book(self, book: PriceBook) -> PriceBook:
        """Stored as the next version number (the table is locked on PostgreSQL meanwhile)."""
        if self._postgres:
            await self._session.execute(sa.text("LOCK TABLE price_book IN EXCLUSIVE MODE"))
        latest = (
            await self._session.execute(sa.select(sa.func.max(PRICE_BOOK.c.version)))
        ).scalar()
        stored = dataclasses.replace(book, version=(latest or 0) + 1)
        await self._session.execute(
            sa.insert(PRICE_BOOK).values(
                version=stored.version,
                effective_from=stored.effective_from,
                document=stored.document(),
                created_by=stored.created_by,
                created_at=stored.created_at,
            )
        )
        return stored

    # cards -----------------------------------------------------------------------------------

    async def customer_id(self, patient_id: UUID) -> str | None:
        return (
            await self._session.execute(
                sa.select(CUSTOMER.c.customer_id).where(CUSTOMER.c.patient_id == patient_id)
            )
        ).scalar()

    async def save_customer(self, patient_id: UUID, customer_id: str, now: datetime) -> None:
        if await self.customer_id(patient_id) is None:
            await self._session.execute(
                sa.insert(CUSTOMER).values(
                    patient_id=patient_id, customer_id=customer_id, created_at=now
                )
            )

    async def add_payment_method(self, method: SavedPaymentMethod) -> None:
        """Saved as the patient's default card; the one before stays on file, not charged."""
        await self._session.execute(
            sa.update(PAYMENT_METHOD)
            .where(PAYMENT_METHOD.c.patient_id == method.patient_id)
            .values(is_default=False)
        )
        await self._session.execute(sa.insert(PAYMENT_METHOD).values(**dataclasses.asdict(method)))

    async def payment_methods(self, patient_id: UUID) -> list[SavedPaymentMethod]:
        rows = await self._session.execute(
            sa.select(PAYMENT_METHOD)
            .where(PAYMENT_METHOD.c.patient_id == patient_id)
            .order_by(PAYMENT_METHOD.c.is_default.desc(), PAYMENT_METHOD.c.created_at.desc())
        )
        return [SavedPaymentMethod(**row._mapping) for row in rows]

    async def card_on_file(self, patient_id: UUID) -> SavedPaymentMethod | None:
        """The card charges go to: the one saved last."""
        methods = await self.payment_methods(patient_id)
        return methods[0] if methods and methods[0].is_default else None

    # courses ---------------------------------------------------------------------------------

    async def add_course(self, values: dict[str, Any]) -> bool:
        if await self._one(sa.select(COURSE.c.id).where(COURSE.c.id == values["id"])):
            return False
        await self._session.execute(sa.insert(COURSE).values(**values))
        return True

    async def get_course(self, course_id: UUID) -> Any:
        return await self._one(sa.select(COURSE).where(COURSE.c.id == course_id))

    async def infusions_charged(self, course_id: UUID) -> int:
        return (
            await self._session.execute(
                sa.select(sa.func.count())
                .select_from(CHARGE)
                .where(CHARGE.c.course_id == course_id, CHARGE.c.kind == ChargeKind.INFUSION.value)
            )
        ).scalar_one()

    async def highest_ordinal(self, patient_id: UUID, family: str) -> int:
        return (
            await self._session.execute(
                sa.select(sa.func.coalesce(sa.func.max(CHARGE.c.ordinal), 0)).where(
                    CHARGE.c.patient_id == patient_id,
                    CHARGE.c.family == family,
                    CHARGE.c.kind == ChargeKind.INFUSION.value,
                )
            )
        ).scalar_one()

    # charges ---------------------------------------------------------------------------------

    async def charge_for_cause(self, kind: ChargeKind, cause_id: UUID) -> Charge | None:
        row = await self._one(
            sa.select(CHARGE).where(CHARGE.c.kind == kind.value, CHARGE.c.cause_id == cause_id)
        )
        return None if row is None else _charge(row)

    async def get_charge(self, charge_id: UUID, *, for_update: bool = False) -> Charge | None:
        statement = sa.select(CHARGE).where(CHARGE.c.id == charge_id)
        row = await self._one(self._locked(statement) if for_update else statement)
        return None if row is None else _charge(row)

    async def add_charge(self, charge: Charge) -> None:
        values = dataclasses.asdict(charge)
        values["kind"], values["status"] = charge.kind.value, charge.status.value
        await self._session.execute(sa.insert(CHARGE).values(**values))

    async def save_charge(self, charge: Charge) -> None:
        values = dataclasses.asdict(charge)
        values["kind"], values["status"] = charge.kind.value, charge.status.value
        await self._session.execute(
            sa.update(CHARGE).where(CHARGE.c.id == charge.id).values(**values)
        )

    async def claim_due_charge(self, now: datetime) -> Charge | None:
        """A waiting charge that is due, locked; rows another dispatcher holds are skipped."""
        statement = (
            sa.select(CHARGE)
            .where(CHARGE.c.status.in_(WAITING_VALUES), CHARGE.c.due_at <= now)
            .order_by(CHARGE.c.due_at)
            .limit(1)
        )
        row = await self._one(self._locked(statement, skip=True))
        return None if row is None else _charge(row)

    async def charges(
        self,
        *,
        patient_id: UUID | None = None,
        plan_id: UUID | None = None,
        statuses: Sequence[ChargeStatus] = (),
        kinds: Sequence[ChargeKind] = (),
        service_between: tuple[datetime, datetime] | None = None,
        limit: int = 500,
    ) -> list[Charge]:
        statement = sa.select(CHARGE)
        if patient_id is not None:
            statement = statement.where(CHARGE.c.patient_id == patient_id)
        if plan_id is not None:
            statement = statement.where(CHARGE.c.plan_id == plan_id)
        if statuses:
            statement = statement.where(CHARGE.c.status.in_([s.value for s in statuses]))
        if kinds:
            statement = statement.where(CHARGE.c.kind.in_([k.value for k in kinds]))
        if service_between is not None:
            start, end = service_between
            statement = statement.where(CHARGE.c.service_at >= start, CHARGE.c.service_at < end)
        order = (CHARGE.c.sequence, CHARGE.c.created_at) if plan_id else (CHARGE.c.created_at,)
        rows = await self._session.execute(statement.order_by(*order, CHARGE.c.id).limit(limit))
        return [_charge(row) for row in rows]

    async def payments_between(self, start: datetime, end: datetime) -> list[Charge]:
        rows = await self._session.execute(
            sa.select(CHARGE).where(
                CHARGE.c.status == ChargeStatus.PAID.value,
                CHARGE.c.paid_at >= start,
                CHARGE.c.paid_at <= end,
            )
        )
        return [_charge(row) for row in rows]

    async def charges_by_payment_ids(self, payment_ids: Sequence[str]) -> list[Charge]:
        if not payment_ids:
            return []
        rows = await self._session.execute(
            sa.select(CHARGE).where(CHARGE.c.payment_id.in_(list(payment_ids)))
        )
        return [_charge(row) for row in rows]

    async def add_attempt(self, values: dict[str, Any]) -> None:
        await self._session.execute(sa.insert(ATTEMPT).values(**values))

    async def attempts(self, charge_id: UUID) -> list[Any]:
        rows = await self._session.execute(
            sa.select(ATTEMPT).where(ATTEMPT.c.charge_id == charge_id).order_by(ATTEMPT.c.number)
        )
        return list(rows)

    # plans -----------------------------------------------------------------------------------

    async def add_plan(self, plan: Plan) -> None:
        values = dataclasses.asdict(plan)
        values["status"] = plan.status.value
        await self._session.execute(sa.insert(PLAN).values(**values))

    async def get_plan(self, plan_id: UUID, *, for_update: bool = False) -> Plan | None:
        statement = sa.select(PLAN).where(PLAN.c.id == plan_id)
        row = await self._one(self._locked(statement) if for_update else statement)
        return None if row is None else _plan(row)

    async def plan_for_course(self, course_id: UUID) -> Plan | None:
        row = await self._one(sa.select(PLAN).where(PLAN.c.course_id == course_id))
        return None if row is None else _plan(row)

    async def save_plan(self, plan: Plan) -> None:
        values = dataclasses.asdict(plan)
        values["status"] = plan.status.value
        await self._session.execute(sa.update(PLAN).where(PLAN.c.id == plan.id).values(**values))

    async def plans(
        self, *, patient_id: UUID | None = None, status: PlanStatus | None = None
    ) -> list[Plan]:
        statement = sa.select(PLAN)
        if patient_id is not None:
            statement = statement.where(PLAN.c.patient_id == patient_id)
        if status is not None:
            statement = statement.where(PLAN.c.status == status.value)
        rows = await self._session.execute(statement.order_by(PLAN.c.created_at, PLAN.c.id))
        return [_plan(row) for row in rows]

    # refunds ---------------------------------------------------------------------------------

    async def add_refund(self, refund: Refund) -> None:
        values = dataclasses.asdict(refund)
        values["status"] = refund.status.value
        await self._session.execute(sa.insert(REFUND).values(**values))

    async def save_refund(self, refund: Refund) -> None:
        values = dataclasses.asdict(refund)
        values["status"] = refund.status.value
        await self._session.execute(
            sa.update(REFUND).where(REFUND.c.id == refund.id).values(**values)
        )

    async def get_refund(self, refund_id: UUID) -> Refund | None:
        row = await self._one(sa.select(REFUND).where(REFUND.c.id == refund_id))
        return None if row is None else _refund(row)

    async def refunds_for(self, charge_id: UUID) -> list[Refund]:
        rows = await self._session.execute(
            sa.select(REFUND).where(REFUND.c.charge_id == charge_id).order_by(REFUND.c.created_at)
        )
        return [_refund(row) for row in rows]

    async def claim_due_refund(self, now: datetime) -> Refund | None:
        statement = (
            sa.select(REFUND)
            .where(REFUND.c.status == RefundStatus.PENDING.value, REFUND.c.due_at <= now)
            .order_by(REFUND.c.due_at)
            .limit(1)
        )
        row = await self._one(self._locked(statement, skip=True))
        return None if row is None else _refund(row)

    async def refunds_between(self, start: datetime, end: datetime) -> list[Refund]:
        rows = await self._session.execute(
            sa.select(REFUND).where(
                REFUND.c.status == RefundStatus.SUCCEEDED.value,
                REFUND.c.decided_at >= start,
                REFUND.c.decided_at <= end,
            )
        )
        return [_refund(row) for row in rows]

    async def refunds_by_processor_ids(self, ids: Sequence[str]) -> list[Refund]:
        if not ids:
            return []
        rows = await self._session.execute(
            sa.select(REFUND).where(REFUND.c.processor_refund_id.in_(list(ids)))
        )
        return [_refund(row) for row in rows]

    # ledger ----------------------------------------------------------------------------------

    async def append(self, entry: LedgerEntry) -> None:
        await self._session.execute(sa.insert(LEDGER).values(**dataclasses.asdict(entry)))

    async def ledger(self, patient_id: UUID) -> list[LedgerEntry]:
        rows = await self._session.execute(
            sa.select(LEDGER).where(LEDGER.c.patient_id == patient_id).order_by(LEDGER.c.position)
        )
        return [_entry(row) for row in rows]

    # chargebacks, webhooks, settlements ------------------------------------------------------

    async def add_chargeback(self, values: dict[str, Any]) -> bool:
        if await self._one(sa.select(CHARGEBACK.c.id).where(CHARGEBACK.c.id == values["id"])):
            return False
        await self._session.execute(sa.insert(CHARGEBACK).values(**values))
        return True

    async def chargebacks_for(self, payment_ids: Sequence[str]) -> list[Any]:
        if not payment_ids:
            return []
        rows = await self._session.execute(
            sa.select(CHARGEBACK).where(CHARGEBACK.c.payment_id.in_(list(payment_ids)))
        )
        return list(rows)

    async def claim_webhook_event(self, event_id: str, event_type: str, now: datetime) -> bool:
        """False when the event was applied before (a redelivery)."""
        if await self._one(sa.select(WEBHOOK.c.id).where(WEBHOOK.c.id == event_id)):
            return False
        await self._session.execute(
            sa.insert(WEBHOOK).values(id=event_id, type=event_type, received_at=now)
        )
        return True

    async def add_settlement_report(self, values: dict[str, Any]) -> None:
        await self._session.execute(sa.insert(SETTLEMENT).values(**values))

    async def get_settlement_report(self, report_id: UUID) -> Any:
        return await self._one(sa.select(SETTLEMENT).where(SETTLEMENT.c.id == report_id))

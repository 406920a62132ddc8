"""Charges: from booking's events to the card, once per cause.

Booking's events (in the consumer's inbox transaction) only record what is owed: a charge row,
due now. The dispatcher's `CardCharges` due-queue then claims one due charge at a time (its row
locked, `SKIP LOCKED`), asks the processor with the charge's idempotency key, and records the
answer in the same transaction. Should the process die after the processor answered and before
that commit, the charge is still due with the same key, so the next try gets the processor's
first answer back instead of a second payment.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from billing.adapters.repository import BillingRepository
from billing.domain.model import (
    WAITING,
    Charge,
    ChargeKind,
    ChargeStatus,
    LedgerEntry,
    Plan,
    PlanStatus,
    Refund,
    RefundStatus,
    next_retry,
    unknown_outcome_backoff,
)
from billing.domain.ports import CardGateway, GatewayUnavailable, PaymentResult
from billing.domain.pricing import PriceBook, initial_price_book
from clinic_shared import faults
from clinic_shared.consumer import EventContext
from clinic_shared.contracts import billing, booking
from clinic_shared.logging import get_logger
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

NO_CARD = "no_card_on_file"
PAYOFF_WAIT = timedelta(hours=1)
"""How long an installment waits when a payoff of its plan is under way."""
PAY_AS_YOU_GO = (ChargeKind.INFUSION, ChargeKind.CONSULT, *[k for k in ChargeKind if k.is_fee])


def repository(uow: SqlUnitOfWork) -> BillingRepository:
    return BillingRepository(uow.session, postgres=uow.is_postgres)


def currency(uow: SqlUnitOfWork) -> str:
    return uow.policy.billing.currency


async def price_book_at(instant: datetime, uow: SqlUnitOfWork) -> PriceBook:
    """The book in effect at `instant`: the latest published one, else the policy's prices."""
    return await repository(uow).price_book_at(instant) or initial_price_book(uow.policy)


# what booking's events owe ---------------------------------------------------------------------


async def on_course_booked(
    event: booking.CourseBooked, context: EventContext, uow: SqlUnitOfWork
) -> None:
    await repository(uow).add_course(
        {
            "id": event.course_id,
            "patient_id": event.patient_id,
            "protocol": event.protocol,
            "family": event.family,
            "infusions": len(event.slots),
            "booked_at": event.booked_at,
        }
    )


async def on_infusion_completed(
    event: booking.InfusionCompleted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    repo = repository(uow)
    if await repo.charge_for_cause(ChargeKind.INFUSION, event.appointment_id) is not None:
        return
    price = (await price_book_at(event.completed_at, uow)).infusion(event.family, event.ordinal)
    plan = await repo.plan_for_course(event.course_id)
    now = uow.clock.now()
    await repo.add_charge(
        Charge(
            id=uuid.uuid4(),
            patient_id=event.patient_id,
            kind=ChargeKind.INFUSION,
            cause_id=event.appointment_id,
            amount_cents=price.cents,
            description=f"IV infusion {event.ordinal} ({price.label})",
            status=ChargeStatus.FINANCED if plan else ChargeStatus.PENDING,
            created_at=now,
            due_at=None if plan else now,
            service_at=event.start,
            course_id=event.course_id,
            appointment_id=event.appointment_id,
            plan_id=plan.id if plan else None,
            protocol=event.protocol,
            family=event.family,
            ordinal=event.ordinal,
            infusion_minutes=event.infusion_minutes,
            price_book_version=price.version,
        )
    )


async def on_consult_completed(
    event: booking.ConsultCompleted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    repo = repository(uow)
    if await repo.charge_for_cause(ChargeKind.CONSULT, event.appointment_id) is not None:
        return
    price = (await price_book_at(event.completed_at, uow)).consult(event.protocol)
    if price is None or price.cents == 0:
        return  # the free phone consult
    now = uow.clock.now()
    await repo.add_charge(
        Charge(
            id=uuid.uuid4(),
            patient_id=event.patient_id,
            kind=ChargeKind.CONSULT,
            cause_id=event.appointment_id,
            amount_cents=price.cents,
            description=f"Consultation ({event.protocol.replace('_', ' ')})",
            status=ChargeStatus.PENDING,
            created_at=now,
            due_at=now,
            service_at=event.start,
            course_id=event.course_id,
            appointment_id=event.appointment_id,
            protocol=event.protocol,
            price_book_version=price.version,
        )
    )


async def on_appointment_cancelled(
    event: booking.AppointmentCancelled, context: EventContext, uow: SqlUnitOfWork
) -> None:
    if event.timing != "late" or event.fee_waived or event.reason != "cancelled":
        return
    await _charge_fee(
        ChargeKind.LATE_CANCELLATION, event.appointment_id, event.course_id, event.patient_id,
        event.fee_cents, event.cancelled_at, event.start, uow,
    )  # fmt: skip


async def on_no_show(
    event: booking.AppointmentNoShow, context: EventContext, uow: SqlUnitOfWork
) -> None:
    if event.fee_waived:
        return
    await _charge_fee(
        ChargeKind.NO_SHOW, event.appointment_id, event.course_id, event.patient_id,
        event.fee_cents, event.marked_at, event.start, uow,
    )  # fmt: skip


async def _charge_fee(
    kind: ChargeKind,
    appointment_id: uuid.UUID,
    course_id: uuid.UUID,
    patient_id: uuid.UUID,
    quoted_cents: int,
    happened_at: datetime,
    service_at: datetime,
    uow: SqlUnitOfWork,
) -> None:
    """The price book's fee, but never more than booking quoted and the patient acknowledged."""
    repo = repository(uow)
    if await repo.charge_for_cause(kind, appointment_id) is not None:
        return
    price = (await price_book_at(happened_at, uow)).fee(kind.value)
    amount = min(price.cents, quoted_cents)
    if amount <= 0:
        return
    now = uow.clock.now()
    await repo.add_charge(
        Charge(
            id=uuid.uuid4(),
            patient_id=patient_id,
            kind=kind,
            cause_id=appointment_id,
            amount_cents=amount,
            description=price.label.capitalize(),
            status=ChargeStatus.PENDING,
            created_at=now,
            due_at=now,
            service_at=service_at,
            course_id=course_id,
            appointment_id=appointment_id,
            price_book_version=price.version,
        )
    )


async def on_fee_waived(
    event: booking.FeeWaived, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """Waived before it was paid: it is not charged. Already paid: it is refunded in full."""
    repo = repository(uow)
    found = await repo.charge_for_cause(ChargeKind(event.fee_kind), event.appointment_id)
    if found is None:
        return
    charge = await repo.get_charge(found.id, for_update=True)
    assert charge is not None
    if charge.status in WAITING or charge.status is ChargeStatus.FAILED:
        charge.status, charge.due_at = ChargeStatus.WAIVED, None
        await repo.save_charge(charge)
    elif charge.status is ChargeStatus.PAID:
        await request_refund(charge, charge.refundable_cents, "fee waived", "booking", uow)


async def request_refund(
    charge: Charge, amount_cents: int, reason: str, requested_by: str, uow: SqlUnitOfWork
) -> Refund:
    """A refund waiting for the dispatcher, which submits it with the refund's own key."""
    refund = Refund(
        id=uuid.uuid4(),
        charge_id=charge.id,
        patient_id=charge.patient_id,
        amount_cents=amount_cents,
        reason=reason,
        status=RefundStatus.PENDING,
        requested_by=requested_by,
        created_at=uow.clock.now(),
        due_at=uow.clock.now(),
    )
    await repository(uow).add_refund(refund)
    return refund


# the card -------------------------------------------------------------------------------------


class CardCharges:
    """The due-queue of waiting charges: one card attempt per claimed charge."""

    name = "card_charges"

    def __init__(self, gateway: CardGateway) -> None:
        self.gateway = gateway

    async def close(self) -> None:
        await self.gateway.close()

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            repo = repository(uow)
            charge = await repo.claim_due_charge(uow.clock.now())
            if charge is None:
                return False
            await self.attempt(charge, uow)
            await uow.commit()
            return True

    async def attempt(self, charge: Charge, uow: SqlUnitOfWork) -> None:
        repo = repository(uow)
        now = uow.clock.now()
        if charge.plan_id is not None:
            plan = await repo.get_plan(charge.plan_id, for_update=True)
            if plan is not None and not await _plan_allows(charge, plan, repo, now):
                return
        card = await repo.card_on_file(charge.patient_id)
        if card is None:
            result = PaymentResult(False, None, NO_CARD, "No card is saved for this patient.")
        else:
            try:
                result = await self.gateway.charge(
                    amount_cents=charge.amount_cents,
                    currency=currency(uow),
                    customer_id=card.customer_id,
                    payment_method_id=card.processor_payment_method_id,
                    idempotency_key=charge.idempotency_key(),
                    charge_id=charge.id,
                )
            except GatewayUnavailable:
                charge.unknown_outcomes += 1
                charge.due_at = now + unknown_outcome_backoff(charge.unknown_outcomes)
                await repo.save_charge(charge)
                log.warning("card processor unavailable", charge_id=str(charge.id))
                return
            await faults.reach(faults.BILLING_AFTER_PROCESSOR_CHARGE)
        await record_result(charge, result, uow)


async def _plan_allows(charge: Charge, plan: Plan, repo: BillingRepository, now: datetime) -> bool:
    """An installment waits while a payoff is under way and stops on a delinquent or paid plan."""
    if charge.kind is ChargeKind.PAYOFF:
        return True
    if plan.status is not PlanStatus.ACTIVE:
        charge.due_at = None
        await repo.save_charge(charge)
        return False
    payoff = await repo.charge_for_cause(ChargeKind.PAYOFF, plan.id)
    if payoff is not None and payoff.status in WAITING:
        charge.due_at = now + PAYOFF_WAIT
        await repo.save_charge(charge)
        return False
    return True


async def record_result(charge: Charge, result: PaymentResult, uow: SqlUnitOfWork) -> None:
    """Write what the processor answered: the attempt, and on success the ledger and receipt."""
    repo = repository(uow)
    now = uow.clock.now()
    key = charge.idempotency_key()
    charge.attempts += 1
    charge.unknown_outcomes = 0
    charge.payment_id = result.payment_id or charge.payment_id
    await repo.add_attempt(
        {
            "id": uuid.uuid4(),
            "charge_id": charge.id,
            "number": charge.attempts,
            "idempotency_key": key,
            "succeeded": result.succeeded,
            "payment_id": result.payment_id,
            "failure_code": result.failure_code,
            "failure_message": (result.failure_message or "")[:255] or None,
            "attempted_at": now,
        }
    )
    if result.succeeded:
        await _paid(charge, uow, repo, now)
    else:
        await _declined(charge, result.failure_code or "card_declined", uow, repo, now)


async def _paid(charge: Charge, uow: SqlUnitOfWork, repo: BillingRepository, now: datetime) -> None:
    charge.status, charge.paid_at, charge.due_at, charge.failure_code = (
        ChargeStatus.PAID, now, None, None,
    )  # fmt: skip
    await repo.save_charge(charge)
    billed = charge.kind in PAY_AS_YOU_GO
    await repo.append(
        LedgerEntry(
            id=uuid.uuid4(),
            patient_id=charge.patient_id,
            kind="fee" if charge.kind.is_fee else ("charge" if billed else charge.kind.value),
            description=charge.description,
            charged_cents=charge.amount_cents if billed else 0,
            paid_cents=charge.amount_cents,
            created_at=now,
            charge_id=charge.id,
            plan_id=charge.plan_id,
            reference=charge.payment_id,
        )
    )
    await uow.publish(
        billing.PaymentSucceeded(
            patient_id=charge.patient_id,
            charge_id=charge.id,
            kind=charge.kind.value,
            amount_cents=charge.amount_cents,
            currency=currency(uow),
            appointment_id=charge.appointment_id,
            plan_id=charge.plan_id,
            paid_at=now,
        )
    )
    if charge.plan_id is not None:
        await _settle_plan(charge, uow, repo, now)


async def _settle_plan(
    charge: Charge, uow: SqlUnitOfWork, repo: BillingRepository, now: datetime
) -> None:
    plan = await repo.get_plan(charge.plan_id, for_update=True) if charge.plan_id else None
    if plan is None:
        return
    installments = await repo.charges(plan_id=plan.id, kinds=[ChargeKind.INSTALLMENT])
    early = charge.kind is ChargeKind.PAYOFF
    if early:
        for installment in installments:
            if installment.status is not ChargeStatus.PAID:
                installment.status, installment.due_at = ChargeStatus.CANCELLED, None
                await repo.save_charge(installment)
    elif any(i.status is not ChargeStatus.PAID for i in installments):
        return
    plan.status, plan.closed_at = PlanStatus.PAID, now
    await repo.save_plan(plan)
    await uow.publish(
        billing.PlanPaid(
            patient_id=plan.patient_id, plan_id=plan.id, early_payoff=early, paid_at=now
        )
    )


async def _declined(
    charge: Charge, code: str, uow: SqlUnitOfWork, repo: BillingRepository, now: datetime
) -> None:
    charge.failure_code = code
    retry_at = None
    if charge.kind is ChargeKind.INSTALLMENT:
        retry_at = next_retry(charge, uow.policy.billing.retry_offsets_days(), uow.policy.clinic.tz)
    charge.status = ChargeStatus.RETRYING if retry_at else ChargeStatus.FAILED
    charge.due_at = retry_at
    await repo.save_charge(charge)
    await uow.publish(
        billing.PaymentFailed(
            patient_id=charge.patient_id,
            charge_id=charge.id,
            kind=charge.kind.value,
            amount_cents=charge.amount_cents,
            currency=currency(uow),
            failure_code=code,
            attempt=charge.attempts,
            final=retry_at is None,
            next_attempt_at=retry_at,
            plan_id=charge.plan_id,
            failed_at=now,
        )
    )
    if charge.kind is ChargeKind.INSTALLMENT and retry_at is None and charge.plan_id:
        plan = await repo.get_plan(charge.plan_id, for_update=True)
        if plan is not None and plan.status is PlanStatus.ACTIVE:
            plan.status, plan.delinquent_at = PlanStatus.DELINQUENT, now
            await repo.save_plan(plan)
            await uow.publish(
                billing.PlanDelinquent(
                    patient_id=plan.patient_id,
                    plan_id=plan.id,
                    charge_id=charge.id,
                    overdue_cents=charge.amount_cents,
                    delinquent_at=now,
                )
            )
    log.info("charge declined", charge_id=str(charge.id), failure_code=code)


async def retry_failed_charges(patient_id: uuid.UUID, uow: SqlUnitOfWork) -> int:
    """A new card on file: the patient's declined pay-as-you-go charges are due again."""
    repo = repository(uow)
    failed = await repo.charges(
        patient_id=patient_id, statuses=[ChargeStatus.FAILED], kinds=PAY_AS_YOU_GO
    )
    for charge in failed:
        charge.status, charge.due_at = ChargeStatus.PENDING, uow.clock.now()
        await repo.save_charge(charge)
    return len(failed)

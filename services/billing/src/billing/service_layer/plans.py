"""Interest-free financing plans: 3, 6 or 12 monthly installments at 0%, charged by the due-queue.

A plan finances a course (the infusions it still has to give, priced as they would be charged)
or, for billing staff, an agreed amount. The whole amount goes on the ledger when the plan is
made; each installment paid comes off it. The first installment falls due the day the plan is
made, the others on the same day of the following months (the clinic's calendar).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from uuid import UUID

from billing.domain.model import (
    WAITING,
    Charge,
    ChargeKind,
    ChargeStatus,
    LedgerEntry,
    Plan,
    PlanStatus,
    installment_charges,
)
from billing.service_layer.charges import price_book_at, repository
from clinic_shared.contracts import billing
from clinic_shared.refusals import Conflict, InvalidRequest, NotFound
from clinic_shared.uow import SqlUnitOfWork

MAX_FINANCED_CENTS = 10_000_000


@dataclass(frozen=True)
class PlanView:
    plan: Plan
    installments: list[Charge]
    payoff: Charge | None

    @property
    def paid_cents(self) -> int:
        settled = [*self.installments, *([self.payoff] if self.payoff else [])]
        return sum(c.amount_cents for c in settled if c.status is ChargeStatus.PAID)

    @property
    def remaining_cents(self) -> int:
        return (
            0 if self.plan.status is PlanStatus.PAID else self.plan.amount_cents - self.paid_cents
        )


async def course_amount(course_id: UUID, patient_id: UUID, uow: SqlUnitOfWork) -> int:
    """The course's infusions not yet charged, priced by tier from the patient's next ordinal."""
    repo = repository(uow)
    course = await repo.get_course(course_id)
    if course is None or course.patient_id != patient_id:
        raise NotFound("course")
    if course.family not in ("mood", "pain"):
        raise InvalidRequest("not_an_infusion_course", "Only infusion courses can be financed.")
    remaining = course.infusions - await repo.infusions_charged(course_id)
    if remaining <= 0:
        raise Conflict("course_already_charged", "Every infusion of this course was charged.")
    book = await price_book_at(uow.clock.now(), uow)
    first = await repo.highest_ordinal(patient_id, course.family) + 1
    return sum(book.infusion(course.family, n).cents for n in range(first, first + remaining))


async def create_plan(
    patient_id: UUID,
    installments: int,
    created_by: str,
    uow: SqlUnitOfWork,
    *,
    course_id: UUID | None = None,
    amount_cents: int | None = None,
) -> PlanView:
    policy = uow.policy
    if installments not in policy.billing.installment_counts:
        raise InvalidRequest(
            "installments_not_offered",
            f"Plans run over {', '.join(map(str, policy.billing.installment_counts))} months.",
        )
    repo = repository(uow)
    if course_id is not None:
        if await repo.plan_for_course(course_id) is not None:
            raise Conflict("course_already_financed", "This course is on a plan already.")
        amount = await course_amount(course_id, patient_id, uow)
    elif amount_cents is not None:
        amount = amount_cents
    else:
        raise InvalidRequest("nothing_to_finance", "Give a course_id or an amount_cents.")
    if not installments <= amount <= MAX_FINANCED_CENTS:
        raise InvalidRequest(
            "amount_out_of_range",
            f"A plan finances between {installments} and {MAX_FINANCED_CENTS} cents.",
        )
    now = uow.clock.now()
    plan = Plan(
        id=uuid.uuid4(),
        patient_id=patient_id,
        amount_cents=amount,
        installment_count=installments,
        status=PlanStatus.ACTIVE,
        created_at=now,
        created_by=created_by,
        course_id=course_id,
    )
    await repo.add_plan(plan)
    first_due = now.astimezone(policy.clinic.tz).date()
    schedule = installment_charges(plan, first_due, policy.clinic.tz, now)
    for charge in schedule:
        await repo.add_charge(charge)
    await repo.append(
        LedgerEntry(
            id=uuid.uuid4(),
            patient_id=patient_id,
            kind="plan",
            description=f"Financing plan, {installments} monthly installments at 0%",
            charged_cents=amount,
            paid_cents=0,
            created_at=now,
            plan_id=plan.id,
        )
    )
    await uow.publish(
        billing.PlanCreated(
            patient_id=patient_id,
            plan_id=plan.id,
            course_id=course_id,
            amount_cents=amount,
            installments=installments,
            first_due_date=first_due,
            created_at=now,
        )
    )
    return PlanView(plan, schedule, None)


async def get_plan(plan_id: UUID, uow: SqlUnitOfWork) -> PlanView:
    repo = repository(uow)
    plan = await repo.get_plan(plan_id)
    if plan is None:
        raise NotFound("plan")
    installments = await repo.charges(plan_id=plan.id, kinds=[ChargeKind.INSTALLMENT])
    return PlanView(plan, installments, await repo.charge_for_cause(ChargeKind.PAYOFF, plan.id))


async def list_plans(status: PlanStatus | None, uow: SqlUnitOfWork) -> list[Plan]:
    return await repository(uow).plans(status=status)


async def pay_off(plan_id: UUID, uow: SqlUnitOfWork) -> PlanView:
    """Everything not yet paid, as one charge due now; installments wait while it runs."""
    repo = repository(uow)
    plan = await repo.get_plan(plan_id, for_update=True)
    if plan is None:
        raise NotFound("plan")
    if plan.status is PlanStatus.PAID:
        raise Conflict("plan_paid", "This plan is paid already.")
    view = await get_plan(plan_id, uow)
    payoff = view.payoff
    if payoff is not None and payoff.status in WAITING:
        raise Conflict("payoff_under_way", "A payoff of this plan is being charged.")
    now = uow.clock.now()
    if payoff is None:
        payoff = Charge(
            id=uuid.uuid4(),
            patient_id=plan.patient_id,
            kind=ChargeKind.PAYOFF,
            cause_id=plan.id,
            amount_cents=view.remaining_cents,
            description="Financing plan paid off early",
            status=ChargeStatus.PENDING,
            created_at=now,
            due_at=now,
            plan_id=plan.id,
        )
        await repo.add_charge(payoff)
    else:  # an earlier payoff was declined: try again for what is left now
        payoff.amount_cents = view.remaining_cents
        payoff.status, payoff.due_at, payoff.failure_code = ChargeStatus.PENDING, now, None
        await repo.save_charge(payoff)
    return PlanView(plan, view.installments, payoff)

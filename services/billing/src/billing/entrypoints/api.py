"""Billing's HTTP API: `create_app(settings)`.

The price book, saved cards, the patient's ledger and charges, financing plans, refunds, the
processor's webhooks, settlement reconciliation and superbills. Patients reach their own
records only (another patient's id answers 404); billing staff (roles `billing` and `admin`)
reach everyone's.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from billing.adapters.webhook_signature import SignatureRejected, verify
from billing.bootstrap import bootstrap, build_directory, build_gateway
from billing.config import BillingSettings
from billing.domain.model import Charge, ChargeStatus, PlanStatus, Refund, SavedPaymentMethod
from billing.domain.ports import CardGateway, PatientDirectory
from billing.domain.pricing import PriceBook
from billing.entrypoints import schemas
from billing.service_layer import cards, plans, prices, refunds, settlements, statements, webhooks
from clinic_shared.auth import Principal, Role, ensure_patient_access, require_roles
from clinic_shared.clock import Clock
from clinic_shared.http import DateText, DateTimeText, create_service_app
from clinic_shared.idempotency import run_idempotent
from clinic_shared.problems import ProblemError
from clinic_shared.refusals import answered
from clinic_shared.settings import ServiceSettings
from clinic_shared.uow import SqlUnitOfWork

ANYONE = require_roles(*Role)
BILLING_STAFF = require_roles(Role.BILLING, Role.ADMIN)
SELF_OR_BILLING = require_roles(Role.PATIENT, Role.BILLING, Role.ADMIN)
MAX_SETTLEMENT_BYTES = 20 * 1024 * 1024


def price_book_out(book: PriceBook, currency: str) -> dict[str, Any]:
    return schemas.PriceBookOut(
        version=book.version,
        effective_from=book.effective_from,
        **book.document(),
        currency=currency,
        created_by=book.created_by,
        created_at=book.created_at,
    ).model_dump(mode="json")


def method_out(method: SavedPaymentMethod) -> dict[str, Any]:
    return schemas.PaymentMethodOut(
        id=method.id,
        patient_id=method.patient_id,
        brand=method.brand,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        created_at=method.created_at,
        is_default=method.is_default,
    ).model_dump(mode="json")


def charge_out(charge: Charge, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return charge_model(charge, attempts).model_dump(mode="json")


def charge_model(charge: Charge, attempts: list[dict[str, Any]] | None = None) -> schemas.ChargeOut:
    return schemas.ChargeOut(
        id=charge.id,
        patient_id=charge.patient_id,
        kind=charge.kind.value,
        description=charge.description,
        amount_cents=charge.amount_cents,
        refunded_cents=charge.refunded_cents,
        status=charge.status.value,
        created_at=charge.created_at,
        due_at=charge.due_at,
        paid_at=charge.paid_at,
        service_at=charge.service_at,
        appointment_id=charge.appointment_id,
        course_id=charge.course_id,
        plan_id=charge.plan_id,
        sequence=charge.sequence,
        due_date=charge.due_date,
        ordinal=charge.ordinal,
        price_book_version=charge.price_book_version,
        failure_code=charge.failure_code,
        payment_id=charge.payment_id,
        attempts=None
        if attempts is None
        else [schemas.AttemptOut.model_validate(a) for a in attempts],
    )


def plan_out(view: plans.PlanView) -> dict[str, Any]:
    plan = view.plan
    return schemas.PlanOut(
        id=plan.id,
        patient_id=plan.patient_id,
        course_id=plan.course_id,
        amount_cents=plan.amount_cents,
        installment_count=plan.installment_count,
        status=plan.status.value,
        paid_cents=view.paid_cents,
        remaining_cents=view.remaining_cents,
        created_at=plan.created_at,
        delinquent_at=plan.delinquent_at,
        closed_at=plan.closed_at,
        installments=[charge_model(c) for c in view.installments],
        payoff=charge_model(view.payoff) if view.payoff else None,
    ).model_dump(mode="json")


def refund_out(refund: Refund) -> dict[str, Any]:
    return schemas.RefundOut(
        id=refund.id,
        charge_id=refund.charge_id,
        patient_id=refund.patient_id,
        amount_cents=refund.amount_cents,
        reason=refund.reason,
        status=refund.status.value,
        requested_by=refund.requested_by,
        created_at=refund.created_at,
        decided_at=refund.decided_at,
        failure_code=refund.failure_code,
        processor_refund_id=refund.processor_refund_id,
    ).model_dump(mode="json")


def create_app(
    settings: ServiceSettings,
    clock: Clock | None = None,
    gateway: CardGateway | None = None,
    directory: PatientDirectory | None = None,
) -> FastAPI:
    if not isinstance(settings, BillingSettings):
        raise TypeError("billing needs BillingSettings")
    infra = bootstrap(settings, clock)
    uow_factory = infra.uow_factory
    currency = infra.policy.billing.currency
    processor: CardGateway = gateway or build_gateway(settings)
    patients: PatientDirectory = directory or build_directory(settings)
    app = create_service_app(
        settings=settings,
        infra=infra,
        on_shutdown=[
            *([] if gateway else [processor.close]),
            *([] if directory else [patients.close]),
        ],
        title="Clinic billing",
        description=(
            "Pay-as-you-go charges by price tier, saved cards (processor tokens only), the "
            "ledger, interest-free financing plans, refunds, reconciliation and superbills. "
            "Money is integer cents."
        ),
    )

    # price book ------------------------------------------------------------------------------

    @app.get("/v1/price-book", response_model=schemas.PriceBookOut, tags=["price book"])
    async def get_price_book(
        principal: Annotated[Principal, Depends(ANYONE)],
        at: Annotated[DateTimeText | None, Query(description="the book in effect then")] = None,
    ) -> dict[str, Any]:
        async with uow_factory() as uow:
            return price_book_out(await prices.current(uow, at), currency)

    @app.get(
        "/v1/price-book/versions", response_model=list[schemas.PriceBookOut], tags=["price book"]
    )
    async def price_book_versions(
        principal: Annotated[Principal, Depends(BILLING_STAFF)],
    ) -> list[dict[str, Any]]:
        async with uow_factory() as uow:
            return [price_book_out(b, currency) for b in await prices.history(uow)]

    @app.put("/v1/price-book", response_model=schemas.PriceBookOut, tags=["price book"])
    async def put_price_book(
        body: schemas.PriceBookIn, principal: Annotated[Principal, Depends(BILLING_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                book = await prices.publish(
                    {
                        f: [(t.from_ordinal, t.cents) for t in tiers]
                        for f, tiers in body.infusions.items()
                    },
                    dict(body.consults),
                    body.fees.model_dump(),
                    body.effective_from,
                    principal.subject,
                    uow,
                )
                await uow.commit()
        return price_book_out(book, currency)

    # cards -----------------------------------------------------------------------------------

    @app.post(
        "/v1/patients/{patient_id}/payment-methods",
        status_code=201,
        response_model=schemas.PaymentMethodOut,
        tags=["cards"],
        responses={503: {"description": "The card processor did not answer"}},
    )
    async def add_payment_method(
        patient_id: UUID,
        body: schemas.PaymentMethodIn,
        principal: Annotated[Principal, Depends(SELF_OR_BILLING)],
    ) -> JSONResponse:
        ensure_patient_access(principal, patient_id)
        with answered():
            method = await cards.save_card(patient_id, body.processor_token, processor, uow_factory)
        return JSONResponse(method_out(method), status_code=201)

    @app.get(
        "/v1/patients/{patient_id}/payment-methods",
        response_model=list[schemas.PaymentMethodOut],
        tags=["cards"],
    )
    async def list_payment_methods(
        patient_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> list[dict[str, Any]]:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            methods = await statements.payment_methods(patient_id, uow)
        return [method_out(m) for m in methods]

    # ledger and charges ----------------------------------------------------------------------

    @app.get("/v1/patients/{patient_id}/ledger", response_model=schemas.LedgerOut, tags=["ledger"])
    async def ledger(
        patient_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> dict[str, Any]:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            found = await statements.statement(patient_id, uow)
        running, entries = 0, []
        for e in found.entries:
            running += e.charged_cents - e.paid_cents
            entries.append(
                schemas.LedgerEntryOut(
                    id=e.id,
                    kind=e.kind,
                    description=e.description,
                    charged_cents=e.charged_cents,
                    paid_cents=e.paid_cents,
                    balance_cents=running,
                    created_at=e.created_at,
                    charge_id=e.charge_id,
                    plan_id=e.plan_id,
                    refund_id=e.refund_id,
                )
            )
        return schemas.LedgerOut(
            patient_id=patient_id,
            currency=currency,
            entries=entries,
            charged_cents=sum(e.charged_cents for e in found.entries),
            paid_cents=sum(e.paid_cents for e in found.entries),
            balance_cents=found.balance_cents,
        ).model_dump(mode="json")

    @app.get(
        "/v1/patients/{patient_id}/charges",
        response_model=list[schemas.ChargeOut],
        tags=["ledger"],
    )
    async def patient_charges(
        patient_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> list[dict[str, Any]]:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            found = await statements.charges(uow, patient_id=patient_id)
        return [charge_out(c) for c in found]

    @app.get("/v1/charges/{charge_id}", response_model=schemas.ChargeOut, tags=["ledger"])
    async def get_charge(
        charge_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                charge, attempts = await statements.charge_with_attempts(charge_id, uow)
        ensure_patient_access(principal, charge.patient_id)
        return charge_out(charge, attempts)

    @app.get("/v1/charges", response_model=list[schemas.ChargeOut], tags=["ledger"])
    async def list_charges(
        principal: Annotated[Principal, Depends(BILLING_STAFF)],
        status: Annotated[
            list[ChargeStatus] | None, Query(description="e.g. failed, retrying")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        async with uow_factory() as uow:
            found = await statements.charges(uow, statuses=status or (), limit=limit)
        return [charge_out(c) for c in found]

    # financing plans -------------------------------------------------------------------------

    @app.post(
        "/v1/financing-plans",
        status_code=201,
        response_model=schemas.PlanOut,
        tags=["plans"],
        responses={
            404: {"description": "No such patient or course, or not the caller's"},
            409: {"description": "The course is financed or charged already"},
        },
    )
    async def create_plan(
        body: schemas.PlanIn,
        request: Request,
        principal: Annotated[Principal, Depends(SELF_OR_BILLING)],
    ) -> JSONResponse:
        ensure_patient_access(principal, body.patient_id)
        if body.amount_cents is not None and principal.role is Role.PATIENT:
            raise ProblemError(
                403, "forbidden", "Not allowed", "Only billing staff finance an agreed amount."
            )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                view = await plans.create_plan(
                    body.patient_id,
                    body.installments,
                    principal.subject,
                    uow,
                    course_id=body.course_id,
                    amount_cents=body.amount_cents,
                )
            return 201, plan_out(view)

        return await run_idempotent(
            request, uow_factory, principal, body.model_dump(mode="json"), action
        )

    @app.get("/v1/financing-plans", response_model=list[schemas.PlanSummaryOut], tags=["plans"])
    async def list_plans(
        principal: Annotated[Principal, Depends(BILLING_STAFF)],
        status: PlanStatus | None = None,
    ) -> list[dict[str, Any]]:
        async with uow_factory() as uow:
            found = await plans.list_plans(status, uow)
        return [
            schemas.PlanSummaryOut(
                id=p.id,
                patient_id=p.patient_id,
                course_id=p.course_id,
                amount_cents=p.amount_cents,
                installment_count=p.installment_count,
                status=p.status.value,
                created_at=p.created_at,
                delinquent_at=p.delinquent_at,
            ).model_dump(mode="json")
            for p in found
        ]

    @app.get("/v1/financing-plans/{plan_id}", response_model=schemas.PlanOut, tags=["plans"])
    async def get_plan(
        plan_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                view = await plans.get_plan(plan_id, uow)
        ensure_patient_access(principal, view.plan.patient_id)
        return plan_out(view)

    @app.post(
        "/v1/financing-plans/{plan_id}/payoff",
        status_code=202,
        response_model=schemas.PlanOut,
        tags=["plans"],
        responses={409: {"description": "The plan is paid, or a payoff is under way"}},
    )
    async def pay_off(
        plan_id: UUID, request: Request, principal: Annotated[Principal, Depends(SELF_OR_BILLING)]
    ) -> JSONResponse:
        with answered():
            async with uow_factory() as uow:
                ensure_patient_access(
                    principal, (await plans.get_plan(plan_id, uow)).plan.patient_id
                )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                return 202, plan_out(await plans.pay_off(plan_id, uow))

        return await run_idempotent(request, uow_factory, principal, {"plan": str(plan_id)}, action)

    # refunds ---------------------------------------------------------------------------------

    @app.post(
        "/v1/refunds",
        status_code=202,
        response_model=schemas.RefundOut,
        tags=["refunds"],
        responses={
            404: {"description": "No such charge"},
            409: {"description": "The charge is not paid"},
        },
    )
    async def create_refund(
        body: schemas.RefundIn,
        request: Request,
        principal: Annotated[Principal, Depends(BILLING_STAFF)],
    ) -> JSONResponse:
        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                refund = await refunds.refund(
                    body.charge_id, body.amount_cents, body.reason, principal.subject, uow
                )
            return 202, refund_out(refund)

        return await run_idempotent(
            request, uow_factory, principal, body.model_dump(mode="json"), action
        )

    @app.get("/v1/refunds/{refund_id}", response_model=schemas.RefundOut, tags=["refunds"])
    async def get_refund(
        refund_id: UUID, principal: Annotated[Principal, Depends(BILLING_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                return refund_out(await refunds.get_refund(refund_id, uow))

    # the processor's webhooks ----------------------------------------------------------------

    @app.post(
        "/v1/webhooks/processor",
        tags=["webhooks"],
        response_model=schemas.WebhookOut,
        responses={
            400: {"description": "Unsigned, badly signed, signed too long ago, or not JSON"},
            422: {"description": "Not an event: it needs an id, a type and data.object"},
            503: {"description": "BILLING_WEBHOOK_SECRET is not set"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.WebhookEventIn.model_json_schema()}
                },
            }
        },
    )
    async def processor_webhook(request: Request) -> dict[str, Any]:
        """The processor's events, signed in `Stripe-Signature` (`t=<unix>,v1=<hex>`)."""
        if settings.webhook_secret is None:
            raise ProblemError(
                503, "webhooks_not_configured", "Service unavailable",
                "BILLING_WEBHOOK_SECRET is not set.",
            )  # fmt: skip
        payload = await request.body()
        try:
            verify(
                payload,
                request.headers.get("stripe-signature"),
                settings.webhook_secret.get_secret_value(),
                uow_factory.clock.now(),
                settings.webhook_tolerance_seconds,
            )
        except SignatureRejected as exc:
            raise ProblemError(400, exc.code, "Webhook refused", exc.message) from exc
        try:
            sent = json.loads(payload)
        except ValueError as exc:
            raise ProblemError(400, "malformed_webhook", "Webhook refused", "Not JSON.") from exc
        try:
            event = schemas.WebhookEventIn.model_validate(sent)
        except ValidationError as exc:
            detail = "An event needs an id, a type and data.object."
            raise ProblemError(422, "malformed_webhook", "Webhook refused", detail) from exc
        with answered():
            async with uow_factory() as uow:
                applied = await webhooks.apply(event.model_dump(), uow)
                await uow.commit()
        return {"received": True, "applied": applied}

    # reconciliation --------------------------------------------------------------------------

    @app.post(
        "/v1/reconciliation/settlements",
        status_code=201,
        response_model=schemas.ReportOut,
        tags=["reconciliation"],
        responses={413: {"description": "Larger than 20 MiB"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
    )
    async def upload_settlement(
        request: Request,
        principal: Annotated[Principal, Depends(BILLING_STAFF)],
        settlement_date: Annotated[DateText | None, Query()] = None,
    ) -> JSONResponse:
        raw = await request.body()
        if len(raw) > MAX_SETTLEMENT_BYTES:
            raise ProblemError(413, "too_large", "Too large", "At most 20 MiB per report.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProblemError(
                422, "invalid_settlement_report", "Invalid request", "The report is not UTF-8."
            ) from exc
        if "\x00" in text:  # PostgreSQL cannot store or compare text with NUL in it
            raise ProblemError(
                422, "invalid_settlement_report", "Invalid request", "The report holds NUL."
            )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                report = await settlements.upload(text, settlement_date, principal.subject, uow)
            return 201, schemas.ReportOut.model_validate(report).model_dump(mode="json")

        return await run_idempotent(
            request, uow_factory, principal, {"csv": text, "date": str(settlement_date)}, action
        )

    @app.get(
        "/v1/reconciliation/reports/{report_id}",
        response_model=schemas.ReportOut,
        tags=["reconciliation"],
    )
    async def get_report(
        report_id: UUID, principal: Annotated[Principal, Depends(BILLING_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                report = await settlements.get_report(report_id, uow)
        return schemas.ReportOut.model_validate(report).model_dump(mode="json")

    # superbills ------------------------------------------------------------------------------

    @app.get(
        "/v1/patients/{patient_id}/superbill",
        tags=["superbills"],
        response_class=Response,
        responses={
            200: {"content": {"application/pdf": {}}},
            503: {"description": "Booking could not be asked for the patient's details"},
        },
    )
    async def superbill(
        patient_id: UUID,
        principal: Annotated[Principal, Depends(SELF_OR_BILLING)],
        period_from: Annotated[DateText, Query(alias="from")],
        period_to: Annotated[DateText, Query(alias="to")],
    ) -> Response:
        ensure_patient_access(principal, patient_id)
        with answered():
            pdf = await statements.superbill(
                patient_id, period_from, period_to, patients, uow_factory
            )
        filename = f"superbill-{period_from.isoformat()}-{period_to.isoformat()}.pdf"
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    return app

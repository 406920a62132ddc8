"""Booking's HTTP API: `create_app(settings)`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from booking.bootstrap import bootstrap
from booking.domain.model import Intake, InvalidPatient, Medication, Patient, RegisteredBy
from booking.entrypoints.calendar_api import answered, calendar_routes
from booking.entrypoints.internal_api import internal_routes
from booking.entrypoints.schemas import (
    ClearanceIn,
    IntakeIn,
    IntakeOut,
    MedicationIn,
    PatientIn,
    PatientOut,
)
from booking.service_layer import handlers, intake
from clinic_shared.auth import (
    STAFF_ROLES,
    Principal,
    Role,
    ensure_patient_access,
    require_roles,
)
from clinic_shared.clock import Clock
from clinic_shared.http import create_service_app
from clinic_shared.idempotency import run_idempotent
from clinic_shared.problems import ProblemError
from clinic_shared.settings import ServiceSettings
from clinic_shared.uow import SqlUnitOfWork


def create_app(settings: ServiceSettings, clock: Clock | None = None) -> FastAPI:
    infra = bootstrap(settings, clock)
    app = create_service_app(
        settings=settings,
        infra=infra,
        title="Clinic booking",
        description="Clinic calendar, patients and intake, treatment courses, appointments.",
    )
    uow_factory = infra.uow_factory

    @app.post(
        "/v1/patients",
        status_code=201,
        response_model=PatientOut,
        tags=["patients"],
        responses={409: {"description": "A patient with this id exists"}},
    )
    async def register_patient(
        body: PatientIn,
        request: Request,
        principal: Annotated[Principal, Depends(require_roles(Role.PATIENT, Role.SCHEDULER))],
    ) -> JSONResponse:
        # A self-registering patient's record takes the id their identity token carries.
        if principal.role is Role.PATIENT:
            patient_id, registered_by = _patient_id_from_token(principal), RegisteredBy.PATIENT
        else:
            patient_id, registered_by = uuid.uuid4(), RegisteredBy.STAFF
        command = handlers.RegisterPatient(
            patient_id=patient_id, registered_by=registered_by, **body.model_dump()
        )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            try:
                patient = await handlers.register_patient(command, uow)
            except handlers.PatientAlreadyExists as exc:
                raise ProblemError(409, "patient_exists", "Patient already registered") from exc
            except InvalidPatient as exc:
                raise ProblemError(422, "invalid_patient", "Invalid patient", str(exc)) from exc
            return 201, _patient_out(patient)

        return await run_idempotent(
            request, uow_factory, principal, body.model_dump(mode="json"), action
        )

    @app.get("/v1/patients/{patient_id}", response_model=PatientOut, tags=["patients"])
    async def get_patient(
        patient_id: UUID,
        principal: Annotated[Principal, Depends(require_roles(Role.PATIENT, *STAFF_ROLES))],
    ) -> dict[str, Any]:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            patient = await handlers.get_patient(patient_id, uow)
        if patient is None:
            raise ProblemError(404, "not_found", "Not found")
        return _patient_out(patient)

    @app.put("/v1/patients/{patient_id}/intake", response_model=IntakeOut, tags=["intake"])
    async def submit_intake(
        patient_id: UUID,
        body: IntakeIn,
        principal: Annotated[Principal, Depends(require_roles(Role.PATIENT, Role.CLINICIAN))],
    ) -> dict[str, Any]:
        ensure_patient_access(principal, patient_id)
        blocking = uow_factory.policy.booking.screening_blocking_flags
        unanswered = [flag for flag in blocking if flag not in body.screening]
        if unanswered:
            raise ProblemError(
                422,
                "screening_incomplete",
                "Invalid request",
                f"Answer every screening question: {unanswered}",
                unanswered=unanswered,
            )
        command = intake.SubmitIntake(
            patient_id=patient_id,
            condition=body.condition,
            screening=body.screening,
            medications=[Medication(m.name, m.medication_class) for m in body.medications],
            diagnosis_codes=body.diagnosis_codes,
            treating_clinician=body.treating_clinician,
        )
        with answered():
            async with uow_factory() as uow:
                submitted = await intake.submit_intake(command, uow)
                await uow.commit()
        return _intake_out(submitted, blocking)

    @app.get("/v1/patients/{patient_id}/intake", response_model=IntakeOut, tags=["intake"])
    async def get_intake(
        patient_id: UUID,
        principal: Annotated[
            Principal, Depends(require_roles(Role.PATIENT, Role.CLINICIAN, Role.ADMIN))
        ],
    ) -> dict[str, Any]:
        ensure_patient_access(principal, patient_id)
        with answered():
            async with uow_factory() as uow:
                found = await intake.get_intake(patient_id, uow)
        return _intake_out(found, uow_factory.policy.booking.screening_blocking_flags)

    @app.post(
        "/v1/patients/{patient_id}/intake/clearance",
        response_model=IntakeOut,
        tags=["intake"],
        responses={409: {"description": "No screening answered, or a flag without a reason"}},
    )
    async def clear_intake(
        patient_id: UUID,
        body: ClearanceIn,
        principal: Annotated[Principal, Depends(require_roles(Role.CLINICIAN))],
    ) -> dict[str, Any]:
        command = intake.ClearIntake(
            patient_id=patient_id,
            diagnosis_confirmed=body.diagnosis_confirmed,
            override_reason=body.override_reason,
            clinician_id=principal.subject,
        )
        with answered():
            async with uow_factory() as uow:
                cleared = await intake.clear_intake(command, uow)
                await uow.commit()
        return _intake_out(cleared, uow_factory.policy.booking.screening_blocking_flags)

    app.include_router(calendar_routes(uow_factory))
    app.include_router(internal_routes(uow_factory))
    return app


def _intake_out(found: Intake, blocking: list[str]) -> dict[str, Any]:
    return IntakeOut(
        patient_id=found.patient_id,
        condition=found.condition,
        screening=found.screening,
        medications=[
            MedicationIn(name=m.name, medication_class=m.medication_class)
            for m in found.medications
        ],
        diagnosis_codes=found.diagnosis_codes,
        treating_clinician=found.treating_clinician,
        status=found.status.value,
        blocking_flags=found.blocking_flags(blocking),
        submitted_at=found.submitted_at,
        cleared_at=found.cleared_at,
        cleared_by=found.cleared_by,
        override_reason=found.override_reason,
    ).model_dump(mode="json", by_alias=True)


def _patient_id_from_token(principal: Principal) -> UUID:
    try:
        return UUID(principal.subject)
    except ValueError as exc:
        raise ProblemError(
            403, "forbidden", "Not allowed", "The token's subject is not a patient id."
        ) from exc


def _patient_out(patient: Patient) -> dict[str, Any]:
    return PatientOut.model_validate(patient, from_attributes=True).model_dump(mode="json")

"""Booking's internal API (service role only): what notify and billing may not learn from events.

Contact details, the medication classes that drive reminders and the diagnosis codes a
superbill lists stay in booking; other services ask here with a service token.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from booking.domain.model import Actor
from booking.entrypoints.calendar_api import NOT_IN_THIS_STATE, answered
from booking.entrypoints.schemas import PatientContactOut
from booking.service_layer import calendar, handlers, intake
from booking.service_layer.errors import NotFound
from clinic_shared.auth import Principal, Role, require_roles
from clinic_shared.uow import UnitOfWorkFactory

SERVICES_ONLY = require_roles(Role.SERVICE)


class RideReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: UUID
    """Who replied: the appointment must be theirs (404 otherwise)."""


class RideOut(BaseModel):
    appointment_id: UUID
    ride_confirmed: bool


def internal_routes(uow_factory: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", tags=["internal"])

    @router.get("/patients/{patient_id}", response_model=PatientContactOut)
    async def patient_contact(
        patient_id: UUID, principal: Annotated[Principal, Depends(SERVICES_ONLY)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                patient = await handlers.get_patient(patient_id, uow)
                if patient is None:
                    raise NotFound("patient")
                try:
                    found = await intake.get_intake(patient_id, uow)
                except NotFound:
                    found = None
        return PatientContactOut(
            id=patient.id,
            first_name=patient.first_name,
            last_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
            email=patient.email,
            phone=patient.phone,
            condition=found.condition if found else None,
            medication_classes=sorted({m.medication_class for m in found.medications})
            if found
            else [],
            diagnosis_codes=found.diagnosis_codes if found else [],
        ).model_dump(mode="json")

    @router.post(
        "/appointments/{appointment_id}/ride",
        response_model=RideOut,
        responses=NOT_IN_THIS_STATE,
    )
    async def ride_confirmed_by_reply(
        appointment_id: UUID,
        body: RideReplyIn,
        principal: Annotated[Principal, Depends(SERVICES_ONLY)],
    ) -> dict[str, Any]:
        """The patient confirmed their ride by replying to notify's text (YES)."""
        command = calendar.ConfirmRide(
            appointment_id,
            calendar.Requester(
                actor=Actor.PATIENT,
                role=principal.role.value,
                subject=principal.subject,
                restrict_to=body.patient_id,
            ),
            confirmed=True,
        )
        with answered():
            async with uow_factory() as uow:
                appointment = await calendar.confirm_ride(command, uow)
                await uow.commit()
        return {"appointment_id": appointment.id, "ride_confirmed": appointment.ride_confirmed}

    @router.get("/clinic")
    async def clinic(principal: Annotated[Principal, Depends(SERVICES_ONLY)]) -> dict[str, Any]:
        """The clinic's and its providers' details, as superbills print them."""
        return uow_factory.policy.clinic.model_dump(mode="json")

    return router

"""Notify's HTTP API: `create_app(settings)`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI

from clinic_shared.auth import STAFF_ROLES, Principal, Role, ensure_patient_access, require_roles
from clinic_shared.clock import Clock
from clinic_shared.http import create_service_app
from clinic_shared.settings import ServiceSettings
from notify.bootstrap import bootstrap
from notify.entrypoints.schemas import NotificationList, NotificationOut
from notify.service_layer import handlers


def create_app(settings: ServiceSettings, clock: Clock | None = None) -> FastAPI:
    infra = bootstrap(settings, clock)
    app = create_service_app(
        settings=settings,
        infra=infra,
        title="Clinic notify",
        description="Reminders and notices: scheduling, delivery, preferences.",
    )

    @app.get(
        "/v1/patients/{patient_id}/notifications",
        response_model=NotificationList,
        tags=["notifications"],
    )
    async def list_notifications(
        patient_id: UUID,
        principal: Annotated[Principal, Depends(require_roles(Role.PATIENT, *STAFF_ROLES))],
    ) -> NotificationList:
        ensure_patient_access(principal, patient_id)
        async with infra.uow_factory() as uow:
            found = await handlers.notifications_for(patient_id, uow)
        return NotificationList(
            patient_id=patient_id,
            notifications=[
                NotificationOut(
                    id=n.id, kind=n.kind, channel=n.channel, due_at=n.due_at, status=n.status
                )
                for n in found
            ],
        )

    return app

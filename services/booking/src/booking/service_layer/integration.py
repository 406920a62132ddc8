"""The one place booking's domain events become integration events (ids and facts only)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

from booking.domain import model
from clinic_shared.contracts import booking as contracts
from clinic_shared.envelope import IntegrationEvent
from clinic_shared.uow import SqlUnitOfWork


@singledispatch
def to_integration(event: object) -> IntegrationEvent | None:
    return None


@to_integration.register
def _(event: model.PatientRegistered) -> IntegrationEvent:
    return contracts.PatientRegistered(
        patient_id=event.patient_id,
        registered_at=event.registered_at,
        registered_by=event.registered_by.value,
    )


async def publish_domain_events(uow: SqlUnitOfWork, events: Sequence[object]) -> None:
    for event in events:
        integration = to_integration(event)
        if integration is not None:
            await uow.publish(integration)

"""Notify's event handlers: plain async functions taking an event and a unit of work."""

from __future__ import annotations

from uuid import UUID

from clinic_shared.consumer import EventContext
from clinic_shared.contracts import booking
from clinic_shared.uow import SqlUnitOfWork
from notify.adapters.repository import NotificationRepository
from notify.domain.model import Notification


async def on_patient_registered(
    event: booking.PatientRegistered, context: EventContext, uow: SqlUnitOfWork
) -> None:
    notification = Notification.welcome(
        patient_id=event.patient_id,
        registered_at=event.registered_at,
        source_event_id=context.envelope.event_id,
        now=uow.clock.now(),
    )
    await NotificationRepository(uow.session).add(notification)


async def notifications_for(patient_id: UUID, uow: SqlUnitOfWork) -> list[Notification]:
    return await NotificationRepository(uow.session).for_patient(patient_id)

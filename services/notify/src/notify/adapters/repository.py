"""Notification repository over SQL."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from notify.adapters.orm import NotificationRow
from notify.domain.model import Channel, Kind, Notification, Status

NOTIFICATION = NotificationRow.__table__


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, notification: Notification) -> None:
        await self._session.execute(
            sa.insert(NOTIFICATION).values(
                id=notification.id,
                patient_id=notification.patient_id,
                kind=notification.kind.value,
                channel=notification.channel.value,
                status=notification.status.value,
                due_at=notification.due_at,
                created_at=notification.created_at,
                source_event_id=notification.source_event_id,
            )
        )

    async def for_patient(self, patient_id: UUID) -> list[Notification]:
        rows = (
            await self._session.execute(
                sa.select(NOTIFICATION)
                .where(NOTIFICATION.c.patient_id == patient_id)
                .order_by(NOTIFICATION.c.due_at, NOTIFICATION.c.id)
            )
        ).mappings()
        return [
            Notification(
                id=row["id"],
                patient_id=row["patient_id"],
                kind=Kind(row["kind"]),
                channel=Channel(row["channel"]),
                due_at=row["due_at"],
                status=Status(row["status"]),
                created_at=row["created_at"],
                source_event_id=row["source_event_id"],
            )
            for row in rows
        ]

"""Notify's HTTP response bodies."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel


class NotificationOut(BaseModel):
    id: UUID
    kind: str
    channel: str
    due_at: datetime
    status: str


class NotificationList(BaseModel):
    patient_id: UUID
    notifications: list[NotificationOut]

"""Notify's pure model: what is to be sent to whom, when, and how it went."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class Kind(StrEnum):
    WELCOME = "welcome"
    CONFIRMATION = "confirmation"
    FASTING = "fasting"
    RIDE_HOME = "ride_home"
    MEDICATION_HOLD = "medication_hold"
    WAITLIST_OFFER = "waitlist_offer"
    RECEIPT = "receipt"
    PAYMENT_FAILED = "payment_failed"
    AFTERCARE = "aftercare"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Status(StrEnum):
    SCHEDULED = "scheduled"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class Notification:
    id: UUID
    patient_id: UUID
    kind: Kind
    channel: Channel
    due_at: datetime
    status: Status
    created_at: datetime
    source_event_id: str

    @classmethod
    def welcome(
        cls, patient_id: UUID, registered_at: datetime, source_event_id: str, now: datetime
    ) -> Notification:
        """A welcome e-mail, due as soon as the patient is registered."""
        return cls(
            id=uuid.uuid4(),
            patient_id=patient_id,
            kind=Kind.WELCOME,
            channel=Channel.EMAIL,
            due_at=registered_at,
            status=Status.SCHEDULED,
            created_at=now,
            source_event_id=source_event_id,
        )

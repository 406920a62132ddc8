"""Events notify publishes on `notify.events`: how each message's delivery ended.

They say which message, to which patient (by id), on which channel, and when: never its kind
(a medication-hold reminder says something about the patient's health), its words, or where
it went. Keyed by patient."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from clinic_shared.contracts.registry import contract
from clinic_shared.envelope import IntegrationEvent


class NotifyEvent(IntegrationEvent):
    producer: ClassVar[str] = "notify"

    patient_id: UUID

    def aggregate_key(self) -> str:
        return str(self.patient_id)


@contract
class MessageSent(NotifyEvent):
    """A provider accepted the message (once: the send ledger sees to that)."""

    event_type: ClassVar[str] = "notify.message.sent.v1"

    message_id: UUID
    channel: Literal["email", "sms", "push"]
    attempt: int
    sent_at: datetime


@contract
class MessageFailed(NotifyEvent):
    """The message will not be sent: refused, out of attempts, without an address, or its
    outcome unknown (the provider call was cut off; it is not sent again)."""

    event_type: ClassVar[str] = "notify.message.failed.v1"

    message_id: UUID
    channel: Literal["email", "sms", "push"]
    outcome: Literal["failed", "unknown"]
    reason: str
    """A code: `rejected`, `out_of_attempts`, `no_address`, `unknown_patient`, `cut_off`."""
    failed_at: datetime

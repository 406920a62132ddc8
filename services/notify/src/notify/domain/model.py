"""Notify's pure model: what is to be sent to whom, when, on which channel, and how it went.

A `Message` is one kind of message to one patient on one channel. It is scheduled when an
event makes it due (a booking, an offer, a payment), moved or cancelled when its appointment
or offer changes, and delivered once by a dispatcher:

    scheduled -> claimed -> sending -> sent
                    |           |----> scheduled (the provider refused it for now: backoff)
                    |           |----> failed    (refused for good, or out of attempts)
                    |           '----> unknown   (the call died mid-way: never sent again)
                    '--> scheduled (a stale claim on which nothing was sent yet)
    scheduled -> cancelled | expired (its moment passed: after the appointment began, say)

`sending` is committed, with a send-ledger row, before the provider is called: a dispatcher
that dies during the call leaves a `sending` row that the reaper turns into `unknown` rather
than sending it again, because SMS and SMTP providers do not deduplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class Kind(StrEnum):
    WELCOME = "welcome"
    CONFIRMATION = "confirmation"
    CHANGE = "change"
    CANCELLATION = "cancellation"
    FASTING = "fasting"
    RIDE_HOME = "ride_home"
    MEDICATION_HOLD = "medication_hold"
    WAITLIST_OFFER = "waitlist_offer"
    RECEIPT = "receipt"
    PAYMENT_FAILED = "payment_failed"
    PLAN_DELINQUENT = "plan_delinquent"
    AFTERCARE = "aftercare"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Status(StrEnum):
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


PENDING = (Status.SCHEDULED, Status.CLAIMED)
"""Not yet handed to a provider: such a message can still be moved or cancelled."""

NOTICES = (Kind.CONFIRMATION, Kind.CHANGE, Kind.CANCELLATION)

KIND_CHANNELS: dict[Kind, tuple[Channel, ...]] = {
    Kind.WELCOME: (Channel.EMAIL,),
    Kind.CONFIRMATION: (Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.CHANGE: (Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.CANCELLATION: (Channel.EMAIL, Channel.SMS, Channel.PUSH),
    Kind.FASTING: (Channel.SMS, Channel.PUSH),
    Kind.RIDE_HOME: (Channel.SMS, Channel.PUSH),
    Kind.MEDICATION_HOLD: (Channel.SMS, Channel.PUSH),
    Kind.WAITLIST_OFFER: (Channel.SMS, Channel.EMAIL, Channel.PUSH),
    Kind.RECEIPT: (Channel.EMAIL,),
    Kind.PAYMENT_FAILED: (Channel.EMAIL, Channel.SMS),
    Kind.PLAN_DELINQUENT: (Channel.EMAIL, Channel.SMS),
    Kind.AFTERCARE: (Channel.SMS, Channel.PUSH),
}
"""Where each kind goes, among the channels the patient allows."""


def channels_for(kind: Kind, allowed: frozenset[Channel]) -> list[Channel]:
    """The kind's channels the patient allows; e-mail when none of them is allowed, so that a
    reminder reaches a patient who turned texts off."""
    chosen = [c for c in KIND_CHANNELS[kind] if c in allowed]
    return chosen or [Channel.EMAIL]


@dataclass
class Message:
    id: UUID
    patient_id: UUID
    kind: Kind
    step: str
    channel: Channel
    dedupe_key: str
    """Unique: the same reminder for the same appointment revision and channel exists once."""
    planned_at: datetime
    due_at: datetime
    """When it goes out (quiet hours applied); after a refusal, when it is tried again."""
    send_by: datetime | None
    """After this it is pointless (the appointment began, the offer expired): `expired`."""
    status: Status
    created_at: datetime
    updated_at: datetime
    subject_id: UUID | None = None
    """The appointment, offer, charge or plan the message is about."""
    facts: dict[str, Any] = field(default_factory=dict)
    """What its templates show: instants, amounts, ids. Never contact data or a diagnosis."""
    attempts: int = 0
    claim_token: UUID | None = None
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    provider_ref: str | None = None
    last_error: str | None = None

    @classmethod
    def new(
        cls,
        *,
        patient_id: UUID,
        kind: Kind,
        step: str,
        channel: Channel,
        dedupe_key: str,
        planned_at: datetime,
        due_at: datetime,
        send_by: datetime | None,
        now: datetime,
        subject_id: UUID | None = None,
        facts: dict[str, Any] | None = None,
    ) -> Message:
        return cls(
            id=uuid.uuid4(),
            patient_id=patient_id,
            kind=kind,
            step=step,
            channel=channel,
            dedupe_key=dedupe_key,
            planned_at=planned_at,
            due_at=due_at,
            send_by=send_by,
            status=Status.SCHEDULED,
            created_at=now,
            updated_at=now,
            subject_id=subject_id,
            facts=dict(facts or {}),
        )

    @property
    def pending(self) -> bool:
        return self.status in PENDING


@dataclass(frozen=True)
class Preferences:
    patient_id: UUID
    channels: frozenset[Channel]
    quiet_start: str | None = None
    quiet_end: str | None = None
    push_device: str | None = None
    """The patient app's device token; push is used only with one."""

    def allowed(self) -> frozenset[Channel]:
        if self.push_device is None:
            return self.channels - {Channel.PUSH}
        return self.channels


DEFAULT_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS})


def default_preferences(patient_id: UUID) -> Preferences:
    return Preferences(patient_id=patient_id, channels=DEFAULT_CHANNELS)


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


@dataclass
class KnownAppointment:
    """What notify keeps of an appointment: enough to move, cancel and word its messages."""

    id: UUID
    patient_id: UUID
    course_id: UUID
    family: str
    protocol: str
    start: datetime
    end: datetime
    status: AppointmentStatus
    revision: int = 0
    """How often it was rescheduled: a moved appointment's reminders go out again."""

    @property
    def infusion(self) -> bool:
        return self.family in ("mood", "pain")

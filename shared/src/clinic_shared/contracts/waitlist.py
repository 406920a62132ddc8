"""Events waitlist publishes on `waitlist.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from clinic_shared.contracts.registry import contract
from clinic_shared.envelope import IntegrationEvent


class WaitlistEvent(IntegrationEvent):
    producer: ClassVar[str] = "waitlist"


@contract
class OfferAccepted(WaitlistEvent):
    """A patient accepted an offer of held slots; booking books them and replies.

    The offer reads `accepted` only once booking answers with `booking.hold.booked.v1`
    (or `booking.hold.booking_rejected.v1`, and the block moves on).
    """

    event_type: ClassVar[str] = "waitlist.offer.accepted.v1"

    offer_id: UUID
    hold_id: UUID
    patient_id: UUID
    appointment_ids: list[UUID]
    """The held appointments offered: the whole block, or one slot of a split block."""
    protocol: str
    """What the accepting patient is booked for (the block's protocol, or booster/maintenance)."""
    accepted_at: datetime

    def aggregate_key(self) -> str:
        return str(self.hold_id)


@contract
class SlotsUnclaimed(WaitlistEvent):
    """Nobody on the waitlist took these held slots: booking opens them to everybody."""

    event_type: ClassVar[str] = "waitlist.slots.unclaimed.v1"

    hold_id: UUID
    appointment_ids: list[UUID]
    decided_at: datetime

    def aggregate_key(self) -> str:
        return str(self.hold_id)

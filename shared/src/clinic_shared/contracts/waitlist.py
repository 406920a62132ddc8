"""Events waitlist publishes on `waitlist.events`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from clinic_shared.contracts.registry import contract
from clinic_shared.envelope import IntegrationEvent


class WaitlistEvent(IntegrationEvent):
    producer: ClassVar[str] = "waitlist"


@contract
class OfferMade(WaitlistEvent):
    """A waitlisted patient is offered held slots until `expires_at`; notify tells them."""

    event_type: ClassVar[str] = "waitlist.offer.made.v1"

    offer_id: UUID
    entry_id: UUID
    patient_id: UUID
    hold_id: UUID
    block_id: UUID
    appointment_ids: list[UUID]
    protocol: str
    """What the patient would be booked for: the block's induction, or a booster/maintenance."""
    first_slot_start: datetime
    expires_at: datetime
    made_at: datetime
    manual: bool
    """Offered by a scheduler rather than by matching."""

    def aggregate_key(self) -> str:
        return str(self.offer_id)


@contract
class OfferBooked(WaitlistEvent):
    """Booking confirmed an accepted offer: the slots are the patient's course now."""

    event_type: ClassVar[str] = "waitlist.offer.booked.v1"

    offer_id: UUID
    entry_id: UUID
    patient_id: UUID
    hold_id: UUID
    course_id: UUID
    appointment_ids: list[UUID]
    booked_at: datetime

    def aggregate_key(self) -> str:
        return str(self.offer_id)


@contract
class OfferClosed(WaitlistEvent):
    """An offer ended without a booking; the block moves on to the next matching entry."""

    event_type: ClassVar[str] = "waitlist.offer.closed.v1"

    offer_id: UUID
    entry_id: UUID
    patient_id: UUID
    hold_id: UUID
    outcome: Literal["declined", "expired", "failed", "withdrawn"]
    """`failed`: booking could not book the accepted slots (see `reason`); `withdrawn`: a
    scheduler replaced the offer or the entry was removed."""
    reason: str | None = None
    """For `failed`, booking's reason code (e.g. `intake_not_cleared`, `slot_in_past`)."""
    closed_at: datetime

    def aggregate_key(self) -> str:
        return str(self.offer_id)


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

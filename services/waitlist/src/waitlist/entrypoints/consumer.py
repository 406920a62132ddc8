"""What waitlist consumes from `booking.events`: released blocks, booking's answers to accepted
offers, and completed infusions (for the entry-to-first-infusion figure). One explicit registry."""

from __future__ import annotations

from clinic_shared.consumer import Handler
from clinic_shared.contracts import booking
from clinic_shared.contracts.registry import topic_for
from waitlist.service_layer import offers

CONSUMED_TOPICS = [topic_for("booking")]
EVENT_HANDLERS: dict[str, Handler] = {
    booking.BlockReleased.event_type: offers.on_block_released,
    booking.HoldBooked.event_type: offers.on_hold_booked,
    booking.HoldBookingRejected.event_type: offers.on_hold_booking_rejected,
    booking.InfusionCompleted.event_type: offers.on_infusion_completed,
}

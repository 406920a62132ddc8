"""What booking consumes: the waitlist's answers about held slots. One explicit registry."""

from __future__ import annotations

from booking.service_layer import holds
from clinic_shared.consumer import Handler
from clinic_shared.contracts import waitlist
from clinic_shared.contracts.registry import topic_for

CONSUMED_TOPICS = [topic_for("waitlist")]
EVENT_HANDLERS: dict[str, Handler] = {
    waitlist.OfferAccepted.event_type: holds.on_offer_accepted,
    waitlist.SlotsUnclaimed.event_type: holds.on_slots_unclaimed,
}

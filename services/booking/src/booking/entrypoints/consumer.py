"""What booking consumes: the waitlist's events (handlers arrive with the booking issue)."""

from __future__ import annotations

from clinic_shared.consumer import Handler
from clinic_shared.contracts.registry import topic_for

CONSUMED_TOPICS = [topic_for("waitlist")]
EVENT_HANDLERS: dict[str, Handler] = {}

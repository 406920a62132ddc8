"""What billing consumes: booking's events (handlers arrive with the billing features)."""

from __future__ import annotations

from clinic_shared.consumer import Handler
from clinic_shared.contracts.registry import topic_for

CONSUMED_TOPICS = [topic_for("booking")]
EVENT_HANDLERS: dict[str, Handler] = {}

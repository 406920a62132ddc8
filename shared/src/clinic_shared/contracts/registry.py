"""Type string -> contract model, and the topic of each producer."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from clinic_shared.envelope import IntegrationEvent, MalformedMessage

TOPICS: dict[str, str] = {
    "booking": "booking.events",
    "waitlist": "waitlist.events",
    "billing": "billing.events",
    "notify": "notify.events",
}

CONTRACTS: dict[str, type[IntegrationEvent]] = {}


def contract(cls: type[IntegrationEvent]) -> type[IntegrationEvent]:
    """Class decorator: register a contract under its type string (once)."""
    if cls.event_type in CONTRACTS:
        raise ValueError(f"duplicate contract type {cls.event_type}")
    if not cls.event_type.startswith(cls.producer + ".") or not cls.event_type.rsplit(".", 1)[
        -1
    ].startswith("v"):
        raise ValueError(f"type {cls.event_type} must be '<producer>.<aggregate>.<fact>.vN'")
    CONTRACTS[cls.event_type] = cls
    return cls


def contract_for(event_type: str) -> type[IntegrationEvent] | None:
    return CONTRACTS.get(event_type)


def topic_for(producer: str) -> str:
    return TOPICS[producer]


def parse_payload(event_type: str, payload: dict[str, Any]) -> IntegrationEvent:
    """Validate a payload against its contract; a bad payload is a malformed message."""
    model = CONTRACTS.get(event_type)
    if model is None:
        raise MalformedMessage(f"unknown event type {event_type}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        # Only field locations and error kinds: never the offending values themselves.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['type']}" for err in exc.errors()
        )
        raise MalformedMessage(f"payload does not match {event_type}: {problems}") from exc

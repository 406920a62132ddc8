"""The one envelope every integration event travels in.

On the wire: CloudEvents binary content mode, via the `cloudevents` SDK. The envelope's
attributes ride in Kafka headers (`ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_subject`,
`ce_correlationid`, `ce_causationid`), the payload is the JSON message value and the Kafka
key is the aggregate id.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict

SOURCE_PREFIX = "/clinic/"


class IntegrationEvent(BaseModel):
    """Base of every integration-event payload. Ids and facts only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    producer: ClassVar[str]

    def aggregate_key(self) -> str:
        """The Kafka key: the id of the aggregate the event concerns."""
        raise NotImplementedError


@dataclass(frozen=True)
class Envelope:
    event_id: str
    event_type: str
    producer: str
    occurred_at: datetime
    key: str
    payload: dict[str, Any]
    correlation_id: str | None = None
    causation_id: str | None = None

    @classmethod
    def wrap(
        cls,
        event: IntegrationEvent,
        *,
        occurred_at: datetime,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        key = event.aggregate_key()
        return cls(
            event_id=event_id or str(uuid.uuid4()),
            event_type=event.event_type,
            producer=event.producer,
            occurred_at=occurred_at.astimezone(UTC),
            key=key,
            payload=event.model_dump(mode="json"),
            correlation_id=correlation_id,
            causation_id=causation_id,
        )


class MalformedMessage(ValueError):
    """The message cannot be read as a CloudEvent of ours: it goes to the dead-letter topic."""


def to_kafka(envelope: Envelope) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Envelope -> (key, value, headers) in CloudEvents binary mode."""
    attributes: dict[str, Any] = {
        "id": envelope.event_id,
        "type": envelope.event_type,
        "source": SOURCE_PREFIX + envelope.producer,
        "time": envelope.occurred_at.astimezone(UTC),
        "datacontenttype": "application/json",
        "partitionkey": envelope.key,
        "subject": envelope.key,
    }
    if envelope.correlation_id:
        attributes["correlationid"] = envelope.correlation_id
    if envelope.causation_id:
        attributes["causationid"] = envelope.causation_id
    message = to_binary_event(CloudEvent(attributes=attributes, data=envelope.payload))
    headers = [(n, v) for n, v in message.headers.items() if n != "ce_partitionkey"]
    key = message.key if isinstance(message.key, bytes) else str(message.key).encode()
    return key, message.value, headers


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple[Any, ...]
) -> Envelope:
    """(key, value, headers) -> Envelope; raises MalformedMessage for anything else."""
    if value is None:
        raise MalformedMessage("empty message value")
    header_map = {name: val for name, val in headers if val is not None}
    if "ce_id" not in header_map or "ce_type" not in header_map:
        raise MalformedMessage("missing CloudEvents headers")
    try:
        event = from_binary_event(KafkaMessage(headers=header_map, key=key, value=value))
    except Exception as exc:  # the SDK raises several types for bad attributes or bad JSON
        raise MalformedMessage(f"not a CloudEvent: {type(exc).__name__}") from exc
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise MalformedMessage("payload is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("payload is not a JSON object")
    source = event.get_source()
    time = event.get_time() or datetime.now(UTC)
    return Envelope(
        event_id=event.get_id(),
        event_type=event.get_type(),
        producer=source.removeprefix(SOURCE_PREFIX),
        occurred_at=time.astimezone(UTC),
        key=key.decode() if isinstance(key, bytes) else (key or ""),
        payload=data,
        correlation_id=event.get_extension("correlationid"),
        causation_id=event.get_extension("causationid"),
    )

"""Structured JSON logs with a correlation id, and a guard that keeps personal data out.

The guard is a structlog processor: any field whose name marks personal or health data is
replaced by a placeholder, and any string that looks like an e-mail address, a phone number,
a card number or a bearer token is masked, whatever field it sits in.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id_var: ContextVar[str | None] = ContextVar("causation_id", default=None)

REDACTED = "[redacted]"

# Field names (lower case, compared after removing "_" and "-") that carry personal or health data.
SENSITIVE_FIELD_MARKERS = (
    "name",
    "email",
    "phone",
    "birth",
    "dob",
    "address",
    "diagnos",
    "condition",
    "medication",
    "screening",
    "symptom",
    "note",
    "reason",
    "card",
    "token",
    "authorization",
    "password",
    "secret",
    "ssn",
)
# Field names that contain a marker but are known to be safe identifiers or machine codes.
SAFE_FIELDS = frozenset(
    {
        "event",
        "level",
        "logger",
        "timestamp",
        "service",
        "correlationid",
        "causationid",
        "eventtype",
        "eventid",
        "topic",
        "hostname",
        "logger_name",
        "loggername",
        "filename",
        "funcname",
    }
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = re.compile(r"(?<![\w-])\+?\d[\d ().-]{8,}\d(?![\w-])")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_BEARER = re.compile(r"(?i)bearer\s+[\w.-]+")
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_sensitive_field(name: str) -> bool:
    norm = _normalise(name)
    if norm in SAFE_FIELDS or norm.endswith("id") or norm.endswith("ids"):
        return False
    return any(marker in norm for marker in SENSITIVE_FIELD_MARKERS)


def scrub_text(text: str) -> str:
    """Mask anything in free text that looks like contact data, a card number or a token."""
    text = _BEARER.sub("Bearer " + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _CARD.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_field(k) else scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [scrub_value(v) for v in value]
    return value


def phi_guard(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence against personal data in logs."""
    for key in list(event_dict):
        if key in ("event",):
            if isinstance(event_dict[key], str):
                event_dict[key] = scrub_text(event_dict[key])
            continue
        if is_sensitive_field(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub_value(event_dict[key])
    return event_dict


def _add_correlation(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    cid = correlation_id_var.get()
    if cid and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Route structlog and the standard library through one JSON renderer with the guard."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_correlation,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        phi_guard,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.contextvars.merge_contextvars,
                *shared,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Request logs go through our own middleware; uvicorn's access log is costly and unguarded.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a record is emitted."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)

"""Fault points for the kill tests: a process started with `CLINIC_FAULT_POINT=<name>` stops
at that point, writes `CLINIC_FAULT_MARKER` (a file path) and waits there, so that a test can
SIGKILL it at exactly that moment. Without the variable every fault point is a no-op."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

RELAY_BEFORE_PUBLISH = "relay.before_publish"
RELAY_AFTER_PUBLISH = "relay.after_publish"
BILLING_AFTER_PROCESSOR_CHARGE = "billing.after_processor_charge"
"""The processor answered a charge; billing has not committed what it said."""
NOTIFY_AFTER_PROVIDER_ACCEPT = "notify.after_provider_accept"
"""A provider (SMTP server, SMS gateway) accepted a message; notify has not recorded it."""
CONSUMER_BEFORE_APPLY = "consumer.before_apply"
"""A consumer has read an event and is about to apply it: parked here, it is a stuck consumer."""

HANDLER_DELAY_ENV = "CLINIC_FAULT_HANDLER_DELAY_SECONDS"
"""Seconds every event's handling waits first: a handler slower than the poll interval."""


def armed(point: str) -> bool:
    return os.environ.get("CLINIC_FAULT_POINT") == point


async def reach(point: str) -> None:
    if not armed(point):
        return
    marker = os.environ.get("CLINIC_FAULT_MARKER")
    if marker:
        Path(marker).write_text(point)
    await asyncio.Event().wait()  # parked until the test kills the process


def handler_delay() -> float:
    return float(os.environ.get(HANDLER_DELAY_ENV) or 0)

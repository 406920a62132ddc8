"""Events notify publishes on `notify.events`. Contracts arrive with the notify issue's features."""

from __future__ import annotations

from typing import ClassVar

from clinic_shared.envelope import IntegrationEvent


class NotifyEvent(IntegrationEvent):
    producer: ClassVar[str] = "notify"

"""Events billing publishes on `billing.events`; contracts arrive with billing's features."""

from __future__ import annotations

from typing import ClassVar

from clinic_shared.envelope import IntegrationEvent


class BillingEvent(IntegrationEvent):
    producer: ClassVar[str] = "billing"

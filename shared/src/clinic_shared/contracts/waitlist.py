"""Events waitlist publishes on `waitlist.events`; contracts arrive with its features."""

from __future__ import annotations

from typing import ClassVar

from clinic_shared.envelope import IntegrationEvent


class WaitlistEvent(IntegrationEvent):
    producer: ClassVar[str] = "waitlist"

"""Billing's composition root: settings in, wired infrastructure out."""

from __future__ import annotations

from billing.adapters.orm import INFRA
from clinic_shared.clock import Clock
from clinic_shared.runtime import Infrastructure, build_infrastructure
from clinic_shared.settings import ServiceSettings


def bootstrap(settings: ServiceSettings, clock: Clock | None = None) -> Infrastructure:
    return build_infrastructure(settings, INFRA, clock)

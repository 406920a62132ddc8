"""Waitlist's HTTP API: `create_app(settings)`. Routes arrive with the waitlist features."""

from __future__ import annotations

from fastapi import FastAPI

from clinic_shared.clock import Clock
from clinic_shared.http import create_service_app
from clinic_shared.settings import ServiceSettings
from waitlist.bootstrap import bootstrap


def create_app(settings: ServiceSettings, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        settings=settings,
        infra=bootstrap(settings, clock),
        title="Clinic waitlist",
        description="Waitlist entries, offers of released slots, matching.",
    )

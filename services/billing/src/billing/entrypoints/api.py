"""Billing's HTTP API: `create_app(settings)`. Routes arrive with the billing features."""

from __future__ import annotations

from fastapi import FastAPI

from billing.bootstrap import bootstrap
from clinic_shared.clock import Clock
from clinic_shared.http import create_service_app
from clinic_shared.settings import ServiceSettings


def create_app(settings: ServiceSettings, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        settings=settings,
        infra=bootstrap(settings, clock),
        title="Clinic billing",
        description="Price book, card payments, ledger, plans, reconciliation, superbills.",
    )

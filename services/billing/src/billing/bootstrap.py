"""Billing's composition root: settings in, wired infrastructure and adapters out."""

from __future__ import annotations

from billing.adapters.booking_directory import BookingDirectory
from billing.adapters.orm import INFRA
from billing.adapters.sandbox_gateway import SandboxGateway
from billing.adapters.stripe_gateway import StripeGateway
from billing.config import BillingSettings
from billing.domain.ports import CardGateway, PatientDirectory
from clinic_shared.clock import Clock
from clinic_shared.runtime import Infrastructure, build_infrastructure
from clinic_shared.settings import ServiceSettings


def bootstrap(settings: ServiceSettings, clock: Clock | None = None) -> Infrastructure:
    return build_infrastructure(settings, INFRA, clock)


def build_gateway(settings: BillingSettings) -> CardGateway:
    if settings.gateway == "stripe":
        if settings.stripe_api_key is None or not settings.stripe_api_key.get_secret_value():
            raise SystemExit("billing: BILLING_GATEWAY=stripe needs BILLING_STRIPE_API_KEY")
        return StripeGateway(
            settings.stripe_api_key.get_secret_value(), base_url=settings.stripe_api_base
        )
    return SandboxGateway(settings.sandbox_store)


def build_directory(settings: BillingSettings) -> PatientDirectory:
    return BookingDirectory(settings.booking_url, settings.jwt_secret)

"""Billing's typed settings (`BILLING_*`, plus the common `CLINIC_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    service_name: str = "billing"
    database_url: str = "sqlite+aiosqlite:///.clinic/billing.db"
    http_port: int = 8003
    booking_url: str = "http://127.0.0.1:8001"
    """Booking's API, for the patient details and diagnosis codes a superbill prints."""
    gateway: Literal["sandbox", "stripe"] = "sandbox"
    """The card processor: the built-in sandbox (test cards only) or Stripe."""
    sandbox_store: str = ".clinic/card-sandbox.db"
    """The sandbox processor's own records (kept apart from billing's database)."""
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    webhook_secret: SecretStr | None = None
    """The processor's webhook signing secret; without it the webhook endpoint answers 503."""
    webhook_tolerance_seconds: int = 300
    """How old a signed webhook may be (replay window)."""


def load_settings() -> BillingSettings:
    return BillingSettings()

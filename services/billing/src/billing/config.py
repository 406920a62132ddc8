"""Billing's typed settings (`BILLING_*`, plus the common `CLINIC_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    service_name: str = "billing"
    database_url: str = "sqlite+aiosqlite:///.clinic/billing.db"
    http_port: int = 8003


def load_settings() -> BillingSettings:
    return BillingSettings()

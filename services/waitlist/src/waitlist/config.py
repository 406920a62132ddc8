"""Waitlist's typed settings (`WAITLIST_*`, plus the common `CLINIC_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class WaitlistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WAITLIST_", extra="ignore")

    service_name: str = "waitlist"
    database_url: str = "sqlite+aiosqlite:///.clinic/waitlist.db"
    http_port: int = 8002
    booking_url: str = "http://127.0.0.1:8001"
    """Booking's API, for its internal patient lookup (a service token signs each call)."""


def load_settings() -> WaitlistSettings:
    return WaitlistSettings()

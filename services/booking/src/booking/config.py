"""Booking's typed settings (`BOOKING_*`, plus the common `CLINIC_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore")

    service_name: str = "booking"
    database_url: str = "sqlite+aiosqlite:///.clinic/booking.db"
    http_port: int = 8001


def load_settings() -> BookingSettings:
    return BookingSettings()

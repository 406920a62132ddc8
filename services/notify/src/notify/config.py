"""Notify's typed settings (`NOTIFY_*`, plus the common `CLINIC_*`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    service_name: str = "notify"
    database_url: str = "sqlite+aiosqlite:///.clinic/notify.db"
    http_port: int = 8004


def load_settings() -> NotifySettings:
    return NotifySettings()

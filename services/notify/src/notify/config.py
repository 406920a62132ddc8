"""Notify's typed settings (`NOTIFY_*`, plus the common `CLINIC_*`).

With no provider settings, e-mail, texts and push go to files under `outbox_dir` (the
one-machine default). `NOTIFY_SMTP_HOST` sends e-mail over SMTP; `NOTIFY_SMS_PROVIDER=twilio`
sends texts through Twilio."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from clinic_shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    service_name: str = "notify"
    database_url: str = "sqlite+aiosqlite:///.clinic/notify.db"
    http_port: int = 8004
    booking_url: str = "http://127.0.0.1:8001"
    """Booking's API: contact details, medication classes, ride confirmations."""
    outbox_dir: str = ".clinic/notify-outbox"
    """Where the file sinks write (`mail/*.eml`, `sms.jsonl`, `push.jsonl`)."""
    mail_from: str = "Demo Clinic <no-reply@clinic.invalid>"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False
    """Implicit TLS (port 465) instead of STARTTLS."""
    smtp_timeout_seconds: float = 30.0
    sms_provider: Literal["file", "twilio"] = "file"
    sms_from: str = ""
    """The number texts come from (E.164), with Twilio."""
    twilio_account_sid: str = ""
    sms_auth_token: SecretStr | None = None
    """Twilio's auth token: signs outbound calls and the inbound webhook's requests. Without it
    the inbound webhook answers 503."""
    sms_status_callback: str | None = None
    inbound_sms_url: str | None = None
    """The public URL the SMS provider posts replies to, as it signs it (behind a proxy the
    URL the service sees differs); the request's own URL when unset."""
    recipient_digest_key: SecretStr | None = None
    """Keys the digests of phone numbers in the send ledger; derived from the JWT secret when
    unset."""

    def digest_key(self) -> bytes:
        if self.recipient_digest_key is not None:
            return self.recipient_digest_key.get_secret_value().encode()
        return hashlib.sha256(b"notify-recipient-digest:" + self.jwt_secret.encode()).digest()


def load_settings() -> NotifySettings:
    return NotifySettings()

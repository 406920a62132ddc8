"""Notify's composition root: settings in, wired infrastructure and adapters out."""

from __future__ import annotations

from pathlib import Path

from clinic_shared.clock import Clock
from clinic_shared.runtime import Infrastructure, build_infrastructure
from clinic_shared.settings import ServiceSettings
from notify.adapters.booking_directory import BookingDirectory
from notify.adapters.email import FileEmailSink, SmtpEmailSender
from notify.adapters.orm import INFRA
from notify.adapters.texts import FileTextSink, TwilioSmsSender
from notify.config import NotifySettings
from notify.domain.ports import EmailSender, PatientDirectory, TextSender
from notify.service_layer.delivery import Channels


def bootstrap(settings: ServiceSettings, clock: Clock | None = None) -> Infrastructure:
    return build_infrastructure(settings, INFRA, clock)


def build_directory(settings: NotifySettings) -> PatientDirectory:
    return BookingDirectory(settings.booking_url, settings.jwt_secret)


def _email(settings: NotifySettings) -> EmailSender:
    if settings.smtp_host:
        return SmtpEmailSender(
            settings.smtp_host,
            settings.smtp_port,
            settings.mail_from,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_starttls and not settings.smtp_tls,
            use_tls=settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
        )
    return FileEmailSink(Path(settings.outbox_dir) / "mail", settings.mail_from)


def _sms(settings: NotifySettings) -> TextSender:
    if settings.sms_provider == "twilio":
        token = settings.sms_auth_token.get_secret_value() if settings.sms_auth_token else ""
        if not (settings.twilio_account_sid and token and settings.sms_from):
            raise SystemExit(
                "notify: NOTIFY_SMS_PROVIDER=twilio needs NOTIFY_TWILIO_ACCOUNT_SID, "
                "NOTIFY_SMS_AUTH_TOKEN and NOTIFY_SMS_FROM"
            )
        return TwilioSmsSender(
            settings.twilio_account_sid,
            token,
            settings.sms_from,
            status_callback=settings.sms_status_callback,
        )
    return FileTextSink(Path(settings.outbox_dir) / "sms.jsonl", "sms")


def build_channels(settings: NotifySettings) -> Channels:
    return Channels(
        email=_email(settings),
        sms=_sms(settings),
        push=FileTextSink(Path(settings.outbox_dir) / "push.jsonl", "push"),
    )

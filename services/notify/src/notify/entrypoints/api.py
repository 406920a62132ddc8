"""Notify's HTTP API: `create_app(settings)`.

A patient's scheduled and sent messages, their preferences, and the SMS provider's webhook
for replies. Patients reach their own records only (another patient's id answers 404); staff
read everyone's messages.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl
from uuid import UUID
from xml.sax.saxutils import escape

from fastapi import Depends, FastAPI, Request, Response

from clinic_shared.auth import STAFF_ROLES, Principal, Role, ensure_patient_access, require_roles
from clinic_shared.clock import Clock
from clinic_shared.http import create_service_app
from clinic_shared.problems import ProblemError
from clinic_shared.settings import ServiceSettings
from notify.adapters.texts import verify_twilio_signature
from notify.bootstrap import bootstrap
from notify.config import NotifySettings
from notify.domain.model import Channel, Message, Preferences
from notify.entrypoints.schemas import (
    NotificationList,
    NotificationOut,
    PreferencesIn,
    PreferencesOut,
    QuietHoursIn,
)
from notify.service_layer import replies, scheduling

SELF_OR_STAFF = require_roles(Role.PATIENT, *STAFF_ROLES)
SELF = require_roles(Role.PATIENT)
MAX_WEBHOOK_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"
SMS_FORM = {
    "type": "object",
    "required": ["MessageSid", "From"],
    "properties": {
        "MessageSid": {"type": "string", "minLength": 1, "maxLength": 64},
        "From": {"type": "string", "minLength": 1, "description": "The sender's number"},
        "Body": {"type": "string", "description": "The reply's text"},
    },
}


def notification_out(message: Message) -> NotificationOut:
    return NotificationOut(
        id=message.id,
        kind=message.kind.value,
        step=message.step,
        channel=message.channel.value,
        due_at=message.due_at,
        status=message.status.value,
        subject_id=message.subject_id,
        sent_at=message.sent_at,
        attempts=message.attempts,
    )


def twiml(reply: str | None) -> Response:
    body = f"<Message>{escape(reply)}</Message>" if reply else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        media_type="application/xml",
    )


def create_app(settings: ServiceSettings, clock: Clock | None = None) -> FastAPI:
    assert isinstance(settings, NotifySettings)
    infra = bootstrap(settings, clock)
    uow_factory = infra.uow_factory
    app = create_service_app(
        settings=settings,
        infra=infra,
        title="Clinic notify",
        description="Reminders and notices: scheduling, delivery, preferences, replies.",
    )

    @app.get(
        "/v1/patients/{patient_id}/notifications",
        response_model=NotificationList,
        tags=["notifications"],
    )
    async def list_notifications(
        patient_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> NotificationList:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            found = await scheduling.messages_for(patient_id, uow)
        return NotificationList(
            patient_id=patient_id, notifications=[notification_out(m) for m in found]
        )

    def preferences_out(preferences: Preferences) -> PreferencesOut:
        own = scheduling.own_quiet_hours(preferences)
        clinic = uow_factory.policy.notify.quiet_hours
        return PreferencesOut(
            patient_id=preferences.patient_id,
            channels=sorted(c.value for c in preferences.channels),
            quiet_hours=QuietHoursIn(start=own.start, end=own.end) if own else None,
            clinic_quiet_hours=QuietHoursIn(start=clinic.start, end=clinic.end),
            push_device_registered=preferences.push_device is not None,
        )

    @app.get(
        "/v1/patients/{patient_id}/preferences",
        response_model=PreferencesOut,
        tags=["preferences"],
    )
    async def get_preferences(
        patient_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> PreferencesOut:
        ensure_patient_access(principal, patient_id)
        async with uow_factory() as uow:
            return preferences_out(await scheduling.preferences_of(uow, patient_id))

    @app.put(
        "/v1/patients/{patient_id}/preferences",
        response_model=PreferencesOut,
        tags=["preferences"],
    )
    async def put_preferences(
        patient_id: UUID,
        body: PreferencesIn,
        principal: Annotated[Principal, Depends(SELF)],
    ) -> PreferencesOut:
        """Replace the patient's preferences; what is still pending follows them at once."""
        ensure_patient_access(principal, patient_id)
        quiet = body.quiet_hours
        preferences = Preferences(
            patient_id=patient_id,
            channels=frozenset(Channel(c) for c in body.channels),
            quiet_start=quiet.start.strftime("%H:%M") if quiet else None,
            quiet_end=quiet.end.strftime("%H:%M") if quiet else None,
            push_device=body.push_device,
        )
        async with uow_factory() as uow:
            await scheduling.set_preferences(preferences, uow)
            await uow.commit()
        return preferences_out(preferences)

    @app.post(
        "/v1/inbound/sms",
        tags=["inbound"],
        response_class=Response,
        responses={
            200: {
                "description": "TwiML: the text to send back, if any",
                "content": {"application/xml": {"schema": {"type": "string"}}},
            },
            400: {"description": "Badly signed, or without MessageSid and From"},
            413: {"description": f"Larger than {MAX_WEBHOOK_BYTES} bytes"},
            415: {"description": f"Not a form post ({FORM})"},
            503: {"description": "NOTIFY_SMS_AUTH_TOKEN is not set"},
        },
        openapi_extra={"requestBody": {"required": True, "content": {FORM: {"schema": SMS_FORM}}}},
    )
    async def inbound_sms(request: Request) -> Response:
        """The SMS provider's webhook for replies (Twilio's form fields, signed in
        `X-Twilio-Signature`)."""
        if settings.sms_auth_token is None:
            raise ProblemError(
                503, "inbound_sms_not_configured", "Service unavailable",
                "NOTIFY_SMS_AUTH_TOKEN is not set.",
            )  # fmt: skip
        params = await _webhook_form(request)
        url = settings.inbound_sms_url or str(request.url)
        if not verify_twilio_signature(
            url,
            params,
            request.headers.get("x-twilio-signature"),
            settings.sms_auth_token.get_secret_value(),
        ):
            raise ProblemError(
                400, "bad_signature", "Webhook refused", "The request's signature does not match."
            )
        sid, sender = params.get("MessageSid", ""), params.get("From", "")
        if not sid or len(sid) > 64 or not sender:
            raise ProblemError(
                400, "malformed_webhook", "Webhook refused", "MessageSid and From are required."
            )
        async with uow_factory() as uow:
            outcome = await replies.record_reply(
                sid, sender, params.get("Body", ""), settings.digest_key(), uow
            )
            await uow.commit()
        return twiml(_answer(outcome, uow_factory.policy.clinic.phone))

    return app


async def _webhook_form(request: Request) -> dict[str, str]:
    """The webhook's form fields (the last value of a repeated one), from at most
    `MAX_WEBHOOK_BYTES` of body: read here, as Starlette's form parser needs python-multipart
    and reads a body of any length."""
    too_large = ProblemError(413, "too_large", "Webhook refused", "The request is too large.")
    declared = request.headers.get("content-length") or "0"
    if not declared.isdigit() or int(declared) > MAX_WEBHOOK_BYTES:
        raise too_large
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise ProblemError(
            415, "unsupported_media_type", "Webhook refused", f"A form post ({FORM}) is expected."
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BYTES:
            raise too_large
    try:
        fields = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProblemError(
            400, "malformed_webhook", "Webhook refused", "The form is not URL-encoded UTF-8."
        ) from exc
    if any("\x00" in name or "\x00" in value for name, value in fields):
        # PostgreSQL cannot store NUL in text; no provider sends one.
        raise ProblemError(400, "malformed_webhook", "Webhook refused", "A field holds NUL.")
    return dict(fields)


def _answer(outcome: replies.ReplyOutcome, phone: str) -> str | None:
    if outcome.meaning == "yes":
        if outcome.matched:
            return "Thank you: your ride home is confirmed."
        return f"We could not match your reply to an upcoming visit. Please call us at {phone}."
    return None  # STOP is answered by the provider; other words go to staff by phone

"""The channel adapters against real protocol peers: an SMTP server, Twilio's HTTP contract.

The SMTP server is aiosmtpd in its own thread; its handler records each accepted envelope or
answers a refusal. Twilio is reached through the SDK with an injected HTTP client that records
the request and answers what Twilio's Messages API answers.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import icalendar
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

from clinic_shared.testing import free_port
from notify.adapters.calendar import CalendarEvent, calendar_attachment
from notify.adapters.email import FileEmailSink, SmtpEmailSender
from notify.adapters.texts import (
    FileTextSink,
    TwilioSmsSender,
    sign_twilio_request,
    verify_twilio_signature,
)
from notify.domain.ports import DeliveryDeferred, DeliveryRejected, Email, TextMessage

FROM = "Clinic <appointments@clinic.example>"
PATIENT = "pat@example.com"
STAMP = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)
# a patient in New York: the calendar must carry the same instant in UTC
START = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
ACCOUNT = "AC" + "0" * 32
TOKEN = "twilio-auth-token"
SID = "SM" + "a" * 32


class RecordingHandler:
    """Accepts and records every message, or answers RCPT or DATA with a fixed refusal."""

    def __init__(
        self, rcpt_reply: str | None = None, data_reply: str | None = None, drop: bool = False
    ) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.drop = drop
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.drop:
            # the whole message arrived, and the connection is lost before the answer
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "250 OK"
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Callable[[RecordingHandler], int]]:
    """Starts aiosmtpd servers on free localhost ports; stops them after the test."""
    controllers: list[Controller] = []

    def start(handler: RecordingHandler) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def appointment(uid: str = "appt-1@clinic", sequence: int = 0, **changes: Any) -> CalendarEvent:
    fields: dict[str, Any] = {
        "uid": uid,
        "sequence": sequence,
        "start": START,
        "end": START + timedelta(hours=2),
        "summary": "Appointment at the clinic",
        "location": "12 Main St, Suite 3",
        **changes,
    }
    return CalendarEvent(**fields)


def reminder(reference: str = "n-0001", **changes: Any) -> Email:
    attachment = calendar_attachment(
        [appointment()], method="REQUEST", organizer_name="The Clinic", stamp=STAMP
    )
    fields: dict[str, Any] = {
        "to": PATIENT,
        "subject": "Your appointment on December 1",
        "text": "See you on December 1 at 9:30.",
        "reference": reference,
        "attachments": (attachment,),
        **changes,
    }
    return Email(**fields)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def the_calendar(message: EmailMessage) -> tuple[EmailMessage, icalendar.Calendar]:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return parts[0], icalendar.Calendar.from_ical(payload)


# --- SMTP ---------------------------------------------------------------------------------


async def test_smtp_sends_one_message_with_a_parseable_calendar(
    smtp_server: Callable[[RecordingHandler], int],
) -> None:
    handler = RecordingHandler()
    sender = SmtpEmailSender("127.0.0.1", smtp_server(handler), FROM)

    reference = await sender.send(reminder("n-0001"))
    await sender.close()

    assert reference == "<n-0001@notify.clinic.invalid>"
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "appointments@clinic.example"
    assert envelope.rcpt_tos == [PATIENT]
    assert isinstance(envelope.content, bytes)
    message = parse(envelope.content)
    assert message["Subject"] == "Your appointment on December 1"
    assert message["To"] == PATIENT
    assert message["Message-ID"] == reference
    assert message["Date"] is not None
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "See you on December 1 at 9:30."
    part, calendar = the_calendar(message)
    assert part.get_param("method") == "REQUEST"
    assert part.get_filename() == "appointment.ics"
    assert calendar["METHOD"] == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == "appt-1@clinic"
    assert event.decoded("DTSTART") == datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
    assert event.decoded("DTSTART").utcoffset() == timedelta(0)
    assert event["STATUS"] == "CONFIRMED"


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (RecordingHandler(rcpt_reply="550 5.1.1 No such user"), DeliveryRejected),
        (RecordingHandler(rcpt_reply="451 4.3.0 Try again later"), DeliveryDeferred),
        (RecordingHandler(data_reply="554 5.7.1 Message refused"), DeliveryRejected),
        (RecordingHandler(data_reply="452 4.3.1 Insufficient storage"), DeliveryDeferred),
    ],
    ids=["rcpt-550", "rcpt-451", "data-554", "data-452"],
)
async def test_smtp_refusals_are_rejected_or_deferred_by_their_class(
    smtp_server: Callable[[RecordingHandler], int],
    handler: RecordingHandler,
    error: type[Exception],
) -> None:
    sender = SmtpEmailSender("127.0.0.1", smtp_server(handler), FROM)

    with pytest.raises(error):
        await sender.send(reminder())

    assert handler.envelopes == []


async def test_smtp_closed_port_is_deferred() -> None:
    sender = SmtpEmailSender("127.0.0.1", free_port(), FROM, timeout=5)

    with pytest.raises(DeliveryDeferred) as raised:
        await sender.send(reminder())

    assert isinstance(raised.value.__cause__, aiosmtplib.SMTPConnectError)


async def test_smtp_connection_lost_after_the_data_is_an_unknown_outcome(
    smtp_server: Callable[[RecordingHandler], int], caplog: pytest.LogCaptureFixture
) -> None:
    sender = SmtpEmailSender("127.0.0.1", smtp_server(RecordingHandler(drop=True)), FROM)

    # neither deferred nor rejected: the server may have taken the message
    with caplog.at_level(logging.CRITICAL, logger="mail.log"):
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await sender.send(reminder())


async def test_smtp_unusable_address_is_rejected_before_connecting() -> None:
    # nothing listens on this port: a deferral would mean a connection was tried
    sender = SmtpEmailSender("127.0.0.1", free_port(), FROM)

    with pytest.raises(DeliveryRejected):
        await sender.send(reminder(to="pat@example.com>\r\nRCPT TO:<x@example.com"))


# --- file sinks ---------------------------------------------------------------------------


async def test_file_email_sink_writes_one_parseable_eml(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    sink = FileEmailSink(directory, FROM)

    reference = await sink.send(reminder("n-0002"))
    await sink.close()

    assert reference == "n-0002"
    assert [p.name for p in directory.iterdir()] == ["n-0002.eml"]
    data = (directory / "n-0002.eml").read_bytes()
    assert b"\r\n" in data
    message = parse(data)
    assert message["To"] == PATIENT
    assert message["Message-ID"] == "<n-0002@notify.clinic.invalid>"
    _, calendar = the_calendar(message)
    assert [str(e["UID"]) for e in calendar.walk("VEVENT")] == ["appt-1@clinic"]


async def test_file_text_sink_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "texts" / "sms.jsonl"
    sink = FileTextSink(path, "sms")

    first = await sink.send(
        TextMessage(to="+15551230001", body="Reminder: tomorrow", reference="t1")
    )
    second = await sink.send(
        TextMessage(to="+15551230002", body="See you", reference="t2", title="Clinic")
    )
    await sink.close()

    assert (first, second) == ("file-t1", "file-t2")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["reference"], x["channel"], x["to"]) for x in lines] == [
        ("t1", "sms", "+15551230001"),
        ("t2", "sms", "+15551230002"),
    ]
    assert lines[1]["title"] == "Clinic" and lines[1]["body"] == "See you"
    assert datetime.fromisoformat(lines[0]["at"]).utcoffset() == timedelta(0)


# --- Twilio -------------------------------------------------------------------------------


class FakeTwilioHttp(AsyncHttpClient):
    """Records each request; answers with a fixed status and JSON body, as Twilio would."""

    def __init__(self, status: int = 201, body: dict[str, Any] | None = None) -> None:
        super().__init__(logging.getLogger("test.twilio"), True)
        self.status = status
        self.body = body if body is not None else message_resource()
        self.requests: list[dict[str, Any]] = []
        self.closed = False
        self.unreachable_port: int | None = None
        self.hang = False

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.requests.append({"method": method, "uri": uri, "data": data, "auth": auth})
        if self.hang:
            await asyncio.Event().wait()
        if self.unreachable_port is not None:
            async with aiohttp.ClientSession() as session:
                await session.post(f"http://127.0.0.1:{self.unreachable_port}/", data=data)
        return Response(self.status, json.dumps(self.body), {})

    async def close(self) -> None:
        self.closed = True


def message_resource() -> dict[str, Any]:
    return {
        "account_sid": ACCOUNT,
        "api_version": "2010-04-01",
        "body": "Reminder: tomorrow at 9:30",
        "date_created": "Fri, 20 Nov 2026 17:05:00 +0000",
        "date_sent": None,
        "date_updated": "Fri, 20 Nov 2026 17:05:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15557654321",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": SID,
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}/Media.json"},
        "to": "+15551230001",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json",
    }


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


SMS = TextMessage(to="+15551230001", body="Reminder: tomorrow at 9:30", reference="t1")


async def test_twilio_creates_the_message_and_returns_its_sid() -> None:
    http = FakeTwilioHttp()
    sender = TwilioSmsSender(
        ACCOUNT,
        TOKEN,
        "+15557654321",
        status_callback="https://clinic.example/sms",
        http_client=http,
    )

    assert await sender.send(SMS) == SID
    await sender.close()

    [request] = http.requests
    assert request["method"] == "POST"
    assert request["uri"] == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request["auth"] == (ACCOUNT, TOKEN)
    assert request["data"] == {
        "To": "+15551230001",
        "From": "+15557654321",
        "Body": "Reminder: tomorrow at 9:30",
        "StatusCallback": "https://clinic.example/sms",
    }
    assert http.closed


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, 21211, DeliveryRejected),
        (400, 21614, DeliveryRejected),
        (429, 20429, DeliveryDeferred),
    ],
)
async def test_twilio_refusals_are_rejected_or_deferred(
    status: int, code: int, error: type[Exception]
) -> None:
    http = FakeTwilioHttp(status, twilio_error(status, code, "refused"))
    sender = TwilioSmsSender(ACCOUNT, TOKEN, "+15557654321", http_client=http)

    with pytest.raises(error) as raised:
        await sender.send(SMS)

    assert isinstance(raised.value.__cause__, TwilioRestException)
    assert raised.value.__cause__.code == code
    assert len(http.requests) == 1


async def test_twilio_server_error_is_an_unknown_outcome() -> None:
    http = FakeTwilioHttp(500, twilio_error(500, 20500, "Internal Server Error"))
    sender = TwilioSmsSender(ACCOUNT, TOKEN, "+15557654321", http_client=http)

    with pytest.raises(TwilioRestException) as raised:
        await sender.send(SMS)

    assert raised.value.status == 500


async def test_twilio_unreachable_is_deferred() -> None:
    http = FakeTwilioHttp()
    http.unreachable_port = free_port()
    sender = TwilioSmsSender(ACCOUNT, TOKEN, "+15557654321", http_client=http)

    with pytest.raises(DeliveryDeferred) as raised:
        await sender.send(SMS)

    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)


async def test_twilio_unanswered_request_times_out_as_an_unknown_outcome() -> None:
    # the SDK's aiohttp client has no timeout of its own: the sender bounds the call
    http = FakeTwilioHttp()
    http.hang = True
    sender = TwilioSmsSender(ACCOUNT, TOKEN, "+15557654321", http_client=http, timeout=0.05)

    with pytest.raises(TimeoutError):
        await sender.send(SMS)

    assert len(http.requests) == 1


def test_twilio_signature_round_trip() -> None:
    url = "https://notify.clinic.example/webhooks/twilio/status?channel=sms"
    params = {"MessageSid": SID, "MessageStatus": "delivered", "To": "+15551230001"}
    signature = sign_twilio_request(url, params, TOKEN)

    assert verify_twilio_signature(url, params, signature, TOKEN)
    assert not verify_twilio_signature(url, {**params, "MessageStatus": "failed"}, signature, TOKEN)
    assert not verify_twilio_signature(url.replace("sms", "push"), params, signature, TOKEN)
    assert not verify_twilio_signature(url, params, signature, "another-token")
    assert not verify_twilio_signature(url, params, None, TOKEN)


# --- calendar -----------------------------------------------------------------------------


def test_calendar_request_with_two_events() -> None:
    second = appointment(
        "appt-2@clinic", 3, start=START + timedelta(days=7), end=START + timedelta(days=7, hours=2)
    )

    attachment = calendar_attachment(
        [appointment(), second], method="REQUEST", organizer_name="The Clinic", stamp=STAMP
    )

    assert attachment.content_type == "text/calendar; method=REQUEST; charset=utf-8"
    assert attachment.filename == "appointment.ics"
    calendar = icalendar.Calendar.from_ical(attachment.data)
    assert calendar["METHOD"] == "REQUEST"
    assert calendar["PRODID"] == "-//Clinic back office//notify//EN"
    assert calendar["VERSION"] == "2.0"
    events = calendar.walk("VEVENT")
    assert [(str(e["UID"]), e["SEQUENCE"], e["STATUS"]) for e in events] == [
        ("appt-1@clinic", 0, "CONFIRMED"),
        ("appt-2@clinic", 3, "CONFIRMED"),
    ]
    assert events[1].decoded("DTSTART") == datetime(2026, 12, 8, 14, 30, tzinfo=UTC)
    assert events[1].decoded("DTEND") == datetime(2026, 12, 8, 16, 30, tzinfo=UTC)
    assert events[0].decoded("DTSTAMP") == STAMP
    assert events[0]["SUMMARY"] == "Appointment at the clinic"
    assert events[0]["LOCATION"] == "12 Main St, Suite 3"
    assert events[0]["ORGANIZER"].params["CN"] == "The Clinic"


def test_calendar_cancel() -> None:
    attachment = calendar_attachment(
        [appointment(sequence=2, cancelled=True)],
        method="CANCEL",
        organizer_name="The Clinic",
        stamp=STAMP,
        filename="cancelled.ics",
    )

    assert attachment.content_type == "text/calendar; method=CANCEL; charset=utf-8"
    assert attachment.filename == "cancelled.ics"
    calendar = icalendar.Calendar.from_ical(attachment.data)
    assert calendar["METHOD"] == "CANCEL"
    [event] = calendar.walk("VEVENT")
    assert (str(event["UID"]), event["SEQUENCE"], event["STATUS"]) == (
        "appt-1@clinic",
        2,
        "CANCELLED",
    )


def test_calendar_refuses_naive_times_and_a_cancel_of_a_live_event() -> None:
    with pytest.raises(ValueError, match="naive"):
        calendar_attachment(
            [appointment(start=datetime(2026, 12, 1, 9), end=datetime(2026, 12, 1, 10))],
            method="REQUEST",
            organizer_name="The Clinic",
            stamp=STAMP,
        )
    with pytest.raises(ValueError, match="CANCEL"):
        calendar_attachment(
            [appointment()], method="CANCEL", organizer_name="The Clinic", stamp=STAMP
        )

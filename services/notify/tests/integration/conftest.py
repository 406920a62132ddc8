"""Notify's API, consumer handlers and dispatcher jobs in process, on SQLite and PostgreSQL, with
a clock the tests move by hand. Booking, waitlist and billing are played by the tests: their
events go through the same inbox path the consumer uses, and booking's internal API is a fake
directory. E-mail goes to a real SMTP server (aiosmtpd); texts and push to recording senders
whose answers a test can choose."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from clinic_shared.clock import FakeClock
from clinic_shared.contracts import booking
from clinic_shared.duequeue import drain
from clinic_shared.envelope import Envelope, IntegrationEvent
from clinic_shared.problems import ProblemError
from clinic_shared.testing import SmtpRecorder, api_client, apply_once, bearer, migrate, outbox_rows
from clinic_shared.uow import UnitOfWorkFactory
from notify.adapters.email import SmtpEmailSender
from notify.adapters.orm import INFRA
from notify.config import NotifySettings
from notify.domain.ports import Contact, TextMessage
from notify.entrypoints.api import create_app
from notify.entrypoints.cli import SERVICE_DIR
from notify.entrypoints.consumer import event_handlers
from notify.service_layer.delivery import Channels, Deliveries, StaleClaims
from notify.service_layer.replies import RideReplies

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)  # Friday 09:05 in Portland
LA = ZoneInfo("America/Los_Angeles")  # the default policy's clinic
PROBLEM = "application/problem+json"
SMS_TOKEN = "twilio-auth-token-for-tests"
DIGEST_KEY = b"digest-key-for-tests"


class FakeDirectory:
    """Booking's internal API: contacts, and the rides patients confirmed by text."""

    def __init__(self) -> None:
        self.contacts: dict[UUID, Contact] = {}
        self.confirmed: list[tuple[UUID, UUID]] = []
        self.unavailable = False
        self.refuse = False

    def _answer(self) -> None:
        if self.unavailable:  # what clinic_shared.internal_api raises when booking is away
            raise ProblemError(503, "booking_unavailable", "Service unavailable", "Down.")

    async def contact(self, patient_id: UUID) -> Contact | None:
        self._answer()
        return self.contacts.get(patient_id)

    async def confirm_ride(self, appointment_id: UUID, patient_id: UUID) -> bool:
        self._answer()
        if self.refuse:
            return False
        self.confirmed.append((appointment_id, patient_id))
        return True

    async def close(self) -> None:
        return None


@dataclass
class RecordingTexts:
    """An SMS or push provider: accepts and records, or raises what the test set."""

    sent: list[TextMessage] = field(default_factory=list)
    fail_with: BaseException | None = None

    async def send(self, message: TextMessage) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)
        return f"SM{len(self.sent):032d}"

    async def close(self) -> None:
        return None


@dataclass
class Desk:
    """Notify under test and the helpers its tests share."""

    app: FastAPI
    client: httpx.AsyncClient
    secret: str
    clock: FakeClock
    directory: FakeDirectory
    smtp: SmtpRecorder
    sms: RecordingTexts
    push: RecordingTexts

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.app.state.infra.uow_factory  # type: ignore[no-any-return]

    def patient(self, patient_id: str | UUID) -> dict[str, str]:
        return bearer(self.secret, "patient", str(patient_id))

    @property
    def scheduler(self) -> dict[str, str]:
        return bearer(self.secret, "scheduler", "scheduler-1")

    def new_patient(
        self,
        medication_classes: frozenset[str] = frozenset(),
        *,
        email_address: str | None = "ada.quinn@example.com",
        phone: str | None = "+15035550111",
    ) -> UUID:
        patient_id = uuid.uuid4()
        self.directory.contacts[patient_id] = Contact(
            first_name="Ada",
            email=email_address,
            phone=phone,
            medication_classes=medication_classes,
        )
        return patient_id

    async def deliver(self, event: IntegrationEvent, *, envelope: Envelope | None = None) -> bool:
        envelope = envelope or Envelope.wrap(event, occurred_at=self.clock.now())
        return await apply_once(
            self.uow_factory, envelope, event_handlers(self.directory), "notify"
        )

    def deliveries(self) -> Deliveries:
        channels = Channels(
            email=SmtpEmailSender("127.0.0.1", self.smtp.port, "Demo Clinic <no-reply@x.test>"),
            sms=self.sms,
            push=self.push,
        )
        return Deliveries(channels, self.directory, DIGEST_KEY)

    async def run_due(self, clock: FakeClock | None = None) -> int:
        """What the dispatcher does: work every due-queue until nothing is due."""
        factory = dataclasses.replace(self.uow_factory, clock=clock) if clock else self.uow_factory
        jobs = [self.deliveries(), StaleClaims(), RideReplies(self.directory)]
        return await drain(jobs, factory)

    async def notifications(self, patient_id: UUID) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/v1/patients/{patient_id}/notifications", headers=self.scheduler
        )
        assert response.status_code == 200, response.text
        return list(response.json()["notifications"])

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await outbox_rows(self.app.state.infra.engine, INFRA)
        return [r for r in rows if event_type is None or r["event_type"] == event_type]

    def emails(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.smtp.messages
        ]

    @staticmethod
    def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        body = response.json()
        if code is not None:
            assert body["code"] == code, body
        return dict(body)


@pytest.fixture
def smtp() -> Iterator[SmtpRecorder]:
    server = SmtpRecorder().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def desk(
    database_url: str, jwt_secret: str, tmp_path: Path, smtp: SmtpRecorder
) -> AsyncIterator[Desk]:
    await migrate(SERVICE_DIR, database_url)
    settings = NotifySettings(
        database_url=database_url,
        sms_auth_token=SMS_TOKEN,  # type: ignore[arg-type]
        recipient_digest_key=DIGEST_KEY.decode(),  # type: ignore[arg-type]
        inbound_sms_url="https://notify.clinic.test/v1/inbound/sms",
        outbox_dir=str(tmp_path / "outbox"),
    )
    clock = FakeClock(NOW)
    app = create_app(settings, clock=clock)
    try:
        async with api_client(app) as client:
            yield Desk(
                app, client, jwt_secret, clock, FakeDirectory(), smtp, RecordingTexts(),
                RecordingTexts(),
            )  # fmt: skip
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()


def local(text: str) -> datetime:
    """A clinic-local wall time."""
    return datetime.fromisoformat(text).replace(tzinfo=LA)


@dataclass
class Booked:
    course_id: UUID
    slots: list[booking.SlotFact]

    @property
    def appointment_ids(self) -> list[UUID]:
        return [s.appointment_id for s in self.slots]


async def book(
    desk: Desk,
    patient_id: UUID,
    starts: Sequence[str],
    *,
    family: str = "mood",
    hours: int = 2,
    appointments: bool = True,
) -> Booked:
    """What booking says of a course: the course, then (unless told not to) each appointment."""
    course_id = uuid.uuid4()
    slots = [
        booking.SlotFact(
            appointment_id=uuid.uuid4(),
            resource_id="chair-1",
            start=local(s),
            end=local(s) + timedelta(hours=hours),
        )
        for s in starts
    ]
    protocol = f"{family}_induction"
    assert await desk.deliver(
        booking.CourseBooked(
            course_id=course_id,
            patient_id=patient_id,
            protocol=protocol,
            family=family,  # type: ignore[arg-type]
            slots=slots,
            booked_at=desk.clock.now(),
            booked_by="patient",
        )
    )
    for n, slot in enumerate(slots if appointments else [], start=1):
        assert await desk.deliver(
            booking.AppointmentBooked(
                appointment_id=slot.appointment_id,
                course_id=course_id,
                patient_id=patient_id,
                protocol=protocol,
                family=family,  # type: ignore[arg-type]
                sequence=n,
                resource_id=slot.resource_id,
                start=slot.start,
                end=slot.end,
                first_visit=n == 1,
            )
        )
    return Booked(course_id, slots)

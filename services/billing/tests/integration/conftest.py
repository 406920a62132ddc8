"""Billing's API, consumer handlers and due-queues in process, on SQLite and PostgreSQL, with a
clock the tests move by hand. Booking is played by the tests: its events go through the same
inbox path the consumer uses. The card processor is the sandbox, with its own store file."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from billing.adapters.orm import INFRA
from billing.adapters.sandbox_gateway import SandboxGateway
from billing.adapters.webhook_signature import sign
from billing.config import BillingSettings
from billing.domain.ports import PatientRecord
from billing.entrypoints.api import create_app
from billing.entrypoints.cli import SERVICE_DIR
from billing.entrypoints.consumer import EVENT_HANDLERS
from billing.service_layer.charges import CardCharges
from billing.service_layer.refunds import RefundSubmissions
from clinic_shared.clock import FakeClock
from clinic_shared.contracts import booking
from clinic_shared.duequeue import drain
from clinic_shared.envelope import Envelope, IntegrationEvent
from clinic_shared.testing import api_client, apply_once, bearer, migrate, outbox_rows
from clinic_shared.uow import UnitOfWorkFactory

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)  # Friday 09:05 in Portland
PROBLEM = "application/problem+json"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


class FakeDirectory:
    """Booking's internal patient lookup."""

    def __init__(self) -> None:
        self.patients: dict[UUID, PatientRecord] = {}

    async def lookup(self, patient_id: UUID) -> PatientRecord | None:
        return self.patients.get(patient_id)

    async def close(self) -> None:
        return None


@dataclass
class Till:
    """Billing under test and the helpers its tests share."""

    app: FastAPI
    client: httpx.AsyncClient
    secret: str
    clock: FakeClock
    directory: FakeDirectory
    gateway: SandboxGateway
    delivered: list[Envelope] = field(default_factory=list)

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.app.state.infra.uow_factory  # type: ignore[no-any-return]

    def token(self, role: str, subject: str | None = None) -> dict[str, str]:
        return bearer(self.secret, role, subject)

    @property
    def billing(self) -> dict[str, str]:
        return self.token("billing", "billing-1")

    def patient(self, patient_id: str | UUID) -> dict[str, str]:
        return self.token("patient", str(patient_id))

    def new_patient(self, diagnosis_codes: tuple[str, ...] = ("F33.2",)) -> str:
        patient_id = uuid.uuid4()
        self.directory.patients[patient_id] = PatientRecord(
            patient_id, "Ada", "Quinn", date(1980, 4, 2), list(diagnosis_codes)
        )
        return str(patient_id)

    async def deliver(self, event: IntegrationEvent, *, envelope: Envelope | None = None) -> bool:
        envelope = envelope or Envelope.wrap(event, occurred_at=self.clock.now())
        self.delivered.append(envelope)
        return await apply_once(self.uow_factory, envelope, EVENT_HANDLERS, "billing")

    async def save_card(self, patient_id: str, token: str = "pm_card_visa") -> httpx.Response:
        return await self.client.post(
            f"/v1/patients/{patient_id}/payment-methods",
            json={"processor_token": token},
            headers=self.patient(patient_id),
        )

    async def card(self, patient_id: str, token: str = "pm_card_visa") -> dict[str, Any]:
        response = await self.save_card(patient_id, token)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def complete(
        self,
        patient_id: str,
        ordinal: int,
        *,
        family: str = "mood",
        protocol: str = "mood_induction",
        course_id: UUID | None = None,
        minutes: int = 60,
        at: datetime | None = None,
    ) -> booking.InfusionCompleted:
        done = at or self.clock.now()
        event = booking.InfusionCompleted(
            appointment_id=uuid.uuid4(),
            course_id=course_id or uuid.uuid4(),
            patient_id=UUID(patient_id),
            protocol=protocol,
            family=family,  # type: ignore[arg-type]
            ordinal=ordinal,
            start=done - timedelta(minutes=minutes + 5),
            completed_at=done,
            infusion_minutes=minutes,
        )
        assert await self.deliver(event)
        return event

    async def book_course(
        self, patient_id: str, infusions: int = 6, protocol: str = "mood_induction"
    ) -> UUID:
        course_id = uuid.uuid4()
        slots = [
            booking.SlotFact(
                appointment_id=uuid.uuid4(),
                resource_id="chair-1",
                start=NOW + timedelta(days=3 + 2 * n),
                end=NOW + timedelta(days=3 + 2 * n, minutes=90),
            )
            for n in range(infusions)
        ]
        await self.deliver(
            booking.CourseBooked(
                course_id=course_id,
                patient_id=UUID(patient_id),
                protocol=protocol,
                family="pain" if protocol.startswith("pain") else "mood",
                slots=slots,
                booked_at=self.clock.now(),
                booked_by="staff",
            )
        )
        return course_id

    async def run_due(self, clock: FakeClock | None = None) -> int:
        """What the dispatcher does: work the charge and refund due-queues until none is due."""
        factory = dataclasses.replace(self.uow_factory, clock=clock) if clock else self.uow_factory
        return await drain([CardCharges(self.gateway), RefundSubmissions(self.gateway)], factory)

    async def charges(self, patient_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/patients/{patient_id}/charges", headers=self.billing)
        assert response.status_code == 200, response.text
        return list(response.json())

    async def ledger(self, patient_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/patients/{patient_id}/ledger", headers=self.patient(patient_id)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await outbox_rows(self.app.state.infra.engine, INFRA)
        return [r for r in rows if event_type is None or r["event_type"] == event_type]

    async def webhook(self, event: dict[str, Any], *, at: datetime | None = None,
                      secret: str = WEBHOOK_SECRET) -> httpx.Response:  # fmt: skip
        body = httpx.Request("POST", "/", json=event).content
        stamp = int((at or self.clock.now()).timestamp())
        return await self.client.post(
            "/v1/webhooks/processor",
            content=body,
            headers={
                "Stripe-Signature": sign(body, secret, stamp),
                "Content-Type": "application/json",
            },
        )

    @staticmethod
    def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        body = response.json()
        if code is not None:
            assert body["code"] == code, body
        return dict(body)


@pytest.fixture
async def till(database_url: str, jwt_secret: str, tmp_path: Path) -> AsyncIterator[Till]:
    await migrate(SERVICE_DIR, database_url)
    settings = BillingSettings(
        database_url=database_url,
        webhook_secret=WEBHOOK_SECRET,  # type: ignore[arg-type]
    )
    clock = FakeClock(NOW)
    directory = FakeDirectory()
    gateway = SandboxGateway(tmp_path / "card-sandbox.db")
    app = create_app(settings, clock=clock, gateway=gateway, directory=directory)
    try:
        async with api_client(app) as client:
            yield Till(app, client, jwt_secret, clock, directory, gateway)
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()

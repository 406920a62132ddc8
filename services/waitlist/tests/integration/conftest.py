"""Waitlist's API and consumer handlers in process, on SQLite and PostgreSQL, with a clock the
tests move by hand. Booking is played by the tests: its events go through the same inbox path
the consumer uses, and its patient lookup is a dictionary."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from clinic_shared.clock import FakeClock
from clinic_shared.contracts import booking
from clinic_shared.duequeue import drain
from clinic_shared.envelope import Envelope, IntegrationEvent
from clinic_shared.testing import api_client, apply_once, bearer, migrate, outbox_rows
from clinic_shared.uow import UnitOfWorkFactory
from waitlist.adapters.orm import INFRA
from waitlist.config import WaitlistSettings
from waitlist.domain.ports import PatientFacts
from waitlist.entrypoints.api import create_app
from waitlist.entrypoints.cli import SERVICE_DIR
from waitlist.entrypoints.consumer import EVENT_HANDLERS
from waitlist.service_layer.offers import OfferExpiry

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)  # Friday 09:05 in Portland
PROBLEM = "application/problem+json"
# A mood course's five remaining infusions, Wed to Fri the week after, 09:00-10:30 Portland.
SERIES_STARTS = [
    "2026-11-25T09:00:00-08:00",
    "2026-11-27T09:00:00-08:00",
    "2026-11-30T09:00:00-08:00",
    "2026-12-02T09:00:00-08:00",
    "2026-12-04T09:00:00-08:00",
]


class FakeDirectory:
    """Booking's patient lookup: patient id -> the condition their intake names."""

    def __init__(self) -> None:
        self.patients: dict[UUID, str | None] = {}

    async def lookup(self, patient_id: UUID) -> PatientFacts | None:
        if patient_id not in self.patients:
            return None
        return PatientFacts(patient_id, self.patients[patient_id])


def slot_facts(starts: Sequence[str], minutes: int = 90, chair: str = "chair-1") -> list[Any]:
    facts = []
    for start in starts:
        begin = datetime.fromisoformat(start).astimezone(UTC)
        facts.append(
            booking.SlotFact(
                appointment_id=uuid.uuid4(),
                resource_id=chair,
                start=begin,
                end=begin + timedelta(minutes=minutes),
            )
        )
    return facts


@dataclass
class Desk:
    """The waitlist under test and the helpers its tests share."""

    app: FastAPI
    client: httpx.AsyncClient
    secret: str
    clock: FakeClock
    directory: FakeDirectory
    delivered: list[Envelope] = field(default_factory=list)

    NOW = NOW
    SERIES_STARTS = SERIES_STARTS

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.app.state.infra.uow_factory  # type: ignore[no-any-return]

    def token(self, role: str, subject: str | None = None) -> dict[str, str]:
        return bearer(self.secret, role, subject)

    @property
    def scheduler(self) -> dict[str, str]:
        return self.token("scheduler", "sched-1")

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.token("patient", patient_id)

    def new_patient(self, condition: str | None = "mood") -> str:
        patient_id = uuid.uuid4()
        self.directory.patients[patient_id] = condition
        return str(patient_id)

    async def join(
        self,
        patient_id: str,
        protocol: str = "mood_induction",
        *,
        weekdays: Sequence[str] = (),
        windows: Sequence[tuple[str, str]] = (),
        earliest_start: str = "2026-11-21",
        priority: str = "routine",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = {
            "patient_id": patient_id,
            "protocol": protocol,
            "earliest_start": earliest_start,
            "preferences": {
                "weekdays": list(weekdays),
                "windows": [{"start_time": s, "end_time": e} for s, e in windows],
            },
            "priority": priority,
        }
        return await self.client.post("/v1/entries", json=body, headers=headers or self.scheduler)

    async def waiting(self, patient_id: str, protocol: str = "mood_induction", **kw: Any) -> str:
        response = await self.join(patient_id, protocol, **kw)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def deliver(self, event: IntegrationEvent, *, envelope: Envelope | None = None) -> bool:
        """Booking's event through the inbox, as the consumer applies it."""
        envelope = envelope or Envelope.wrap(event, occurred_at=self.clock.now())
        self.delivered.append(envelope)
        return await apply_once(self.uow_factory, envelope, EVENT_HANDLERS, "waitlist")

    async def release(
        self,
        starts: Sequence[str] = SERIES_STARTS,
        *,
        kind: str = "series",
        protocol: str = "mood_induction",
        family: str = "mood",
        minutes: int = 90,
    ) -> booking.BlockReleased:
        event = booking.BlockReleased(
            hold_id=uuid.uuid4(),
            source_course_id=uuid.uuid4(),
            protocol=protocol,
            family=family,  # type: ignore[arg-type]
            kind=kind,  # type: ignore[arg-type]
            slots=slot_facts(starts, minutes),
            released_at=self.clock.now(),
        )
        assert await self.deliver(event)
        return event

    async def offers(self, patient_id: str, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        response = await self.client.get(
            "/v1/offers", params=params, headers=self.patient(patient_id)
        )
        assert response.status_code == 200, response.text
        return list(response.json()["offers"])

    async def only_offer(self, patient_id: str, status: str = "open") -> dict[str, Any]:
        found = await self.offers(patient_id, status)
        assert len(found) == 1, found
        return found[0]

    async def accept(self, offer: dict[str, Any], patient_id: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"/v1/offers/{offer['id']}/accept",
            headers=self.patient(patient_id or offer["patient_id"]),
        )

    async def decline(self, offer: dict[str, Any], patient_id: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"/v1/offers/{offer['id']}/decline",
            headers=self.patient(patient_id or offer["patient_id"]),
        )

    async def booked(self, offer: dict[str, Any]) -> booking.HoldBooked:
        """Booking's answer to the acceptance: the held slots are the patient's course."""
        event = booking.HoldBooked(
            hold_id=offer["hold_id"],
            offer_id=offer["id"],
            patient_id=offer["patient_id"],
            course_id=uuid.uuid4(),
            appointment_ids=[s["appointment_id"] for s in offer["slots"]],
            booked_at=self.clock.now(),
        )
        await self.deliver(event)
        return event

    async def rejected(self, offer: dict[str, Any], reason: str) -> None:
        await self.deliver(
            booking.HoldBookingRejected(
                hold_id=offer["hold_id"],
                offer_id=offer["id"],
                patient_id=offer["patient_id"],
                reason=reason,  # type: ignore[arg-type]
                rejected_at=self.clock.now(),
            )
        )

    async def expire_due(self, clock: FakeClock | None = None) -> int:
        """What the dispatcher does: work the expiry due-queue until nothing is due."""
        factory = dataclasses.replace(self.uow_factory, clock=clock) if clock else self.uow_factory
        return await drain([OfferExpiry()], factory)

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await outbox_rows(self.app.state.infra.engine, INFRA)
        return [r for r in rows if event_type is None or r["event_type"] == event_type]

    @staticmethod
    def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        body = response.json()
        if code is not None:
            assert body["code"] == code, body
        return dict(body)


@pytest.fixture
async def desk(database_url: str, jwt_secret: str) -> AsyncIterator[Desk]:
    await migrate(SERVICE_DIR, database_url)
    settings = WaitlistSettings(database_url=database_url)
    clock = FakeClock(NOW)
    directory = FakeDirectory()
    app = create_app(settings, clock=clock, directory=directory)
    try:
        async with api_client(app) as client:
            yield Desk(app, client, jwt_secret, clock, directory)
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()

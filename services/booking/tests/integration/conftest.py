"""Booking's API in process, on SQLite and PostgreSQL, with a clock the tests move by hand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from booking.adapters.orm import INFRA, AppointmentRow
from booking.config import BookingSettings
from booking.entrypoints.api import create_app
from booking.entrypoints.cli import SERVICE_DIR
from clinic_shared.settings import CommonSettings
from clinic_shared.testing import FakeClock, api_client, bearer, migrate, outbox_rows

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)  # Friday 09:05 in Portland
PROBLEM = "application/problem+json"
SCREENING_CLEAR = {
    "psychosis": False,
    "seizure_disorder": False,
    "aminophylline_use": False,
    "uncontrolled_hypertension": False,
    "unstable_cardiopulmonary_disease": False,
}
MOOD_COURSE = [  # Mon, Wed, Fri, Mon, Wed, Fri at 09:00 Portland time
    "2026-11-23T09:00:00-08:00",
    "2026-11-25T09:00:00-08:00",
    "2026-11-27T09:00:00-08:00",
    "2026-11-30T09:00:00-08:00",
    "2026-12-02T09:00:00-08:00",
    "2026-12-04T09:00:00-08:00",
]


@dataclass
class Clinic:
    """The service under test, with the helpers and constants the tests share (test modules
    are imported by path, so they reach shared helpers through this fixture)."""

    app: FastAPI
    client: httpx.AsyncClient
    secret: str
    clock: FakeClock

    NOW = NOW
    MOOD_COURSE = MOOD_COURSE
    SCREENING_CLEAR = SCREENING_CLEAR

    def token(self, role: str, subject: str | None = None) -> dict[str, str]:
        return bearer(self.secret, role, subject)

    @property
    def scheduler(self) -> dict[str, str]:
        return self.token("scheduler", "sched-1")

    @property
    def clinician(self) -> dict[str, str]:
        return self.token("clinician", "dr-1")

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.token("patient", patient_id)

    async def register(self) -> str:
        body = {
            "first_name": "Test",
            "last_name": f"Patient {uuid.uuid4().hex[:6]}",
            "date_of_birth": "1980-01-01",
            "email": f"p{uuid.uuid4().hex[:8]}@example.org",
            "phone": "+15035550123",
        }
        response = await self.client.post("/v1/patients", json=body, headers=self.scheduler)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def submit_intake(
        self, patient_id: str, condition: str = "mood", **screening: bool
    ) -> httpx.Response:
        body = {
            "condition": condition,
            "screening": SCREENING_CLEAR | screening,
            "medications": [{"name": "sertraline", "class": "other"}],
            "diagnosis_codes": ["F33.2"],
        }
        return await self.client.put(
            f"/v1/patients/{patient_id}/intake", json=body, headers=self.patient(patient_id)
        )

    async def cleared_patient(self, condition: str = "mood") -> str:
        patient_id = await self.register()
        assert (await self.submit_intake(patient_id, condition)).status_code == 200
        response = await self.client.post(
            f"/v1/patients/{patient_id}/intake/clearance",
            json={"diagnosis_confirmed": True},
            headers=self.clinician,
        )
        assert response.status_code == 200, response.text
        return patient_id

    async def book(
        self,
        patient_id: str,
        protocol: str,
        starts: Sequence[str],
        chairs: str | Sequence[str] = "chair-1",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        chair_list = [chairs] * len(starts) if isinstance(chairs, str) else list(chairs)
        body = {
            "patient_id": patient_id,
            "protocol": protocol,
            "slots": [
                {"start": start, "chair_id": chair}
                for start, chair in zip(starts, chair_list, strict=True)
            ],
        }
        return await self.client.post("/v1/courses", json=body, headers=headers or self.scheduler)

    async def cancel(
        self, appointment_id: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/appointments/{appointment_id}/cancel",
            json=body,
            headers=headers or self.scheduler,
        )

    async def appointment(self, appointment_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/appointments/{appointment_id}", headers=self.scheduler
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await outbox_rows(self.app.state.infra.engine, INFRA)
        return [r for r in rows if event_type is None or r["event_type"] == event_type]

    async def live_occupancies(self) -> list[dict[str, Any]]:
        table = AppointmentRow.__table__
        async with self.app.state.infra.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(table).where(
                    table.c.status.in_(["booked", "held", "checked_in", "completed"])
                )
            )
            return [dict(r) for r in rows.mappings()]

    @staticmethod
    def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
        return assert_problem(response, status, code)

    @staticmethod
    def assert_no_overlap(occupancies: list[dict[str, Any]]) -> None:
        assert_no_overlap(occupancies)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "code"} <= body.keys()
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


def assert_no_overlap(occupancies: list[dict[str, Any]]) -> None:
    by_resource: dict[str, list[tuple[datetime, datetime]]] = {}
    for row in occupancies:
        by_resource.setdefault(row["resource_id"], []).append((row["start_at"], row["end_at"]))
    for resource, intervals in by_resource.items():
        intervals.sort()
        for (_, end), (start, _) in pairwise(intervals):
            assert end <= start, f"overlap on {resource}"


async def make_clinic(
    database_url: str, secret: str, policy_file: Path | None = None
) -> AsyncIterator[Clinic]:
    await migrate(SERVICE_DIR, database_url)
    settings = BookingSettings(
        database_url=database_url,
        common=CommonSettings(policy_file=str(policy_file) if policy_file else None),
    )
    clock = FakeClock(NOW)
    app = create_app(settings, clock=clock)
    try:
        async with api_client(app) as client:
            yield Clinic(app, client, secret, clock)
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()


@pytest.fixture
async def clinic(database_url: str, jwt_secret: str) -> AsyncIterator[Clinic]:
    async for built in make_clinic(database_url, jwt_secret):
        yield built


@pytest.fixture
def clinic_factory() -> Any:
    """`make_clinic` for tests that need their own policy file."""
    return make_clinic

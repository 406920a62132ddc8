"""Booking's patient API over HTTP, in process, on SQLite and PostgreSQL.

The API writes state and outbox rows only; Kafka is not needed here.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from booking.adapters.orm import INFRA, PatientRow
from booking.config import BookingSettings
from booking.entrypoints.api import create_app
from booking.entrypoints.cli import SERVICE_DIR
from clinic_shared.auth import issue_token
from clinic_shared.testing import FakeClock, api_client, bearer, count_rows, migrate, outbox_rows

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)
PATIENTS = "/v1/patients"
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ADA = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "date_of_birth": "1984-03-14",
    "email": "ada.lovelace@example.org",
    "phone": "+15035550100",
}
GRACE = {
    "first_name": "Grace",
    "last_name": "Hopper",
    "date_of_birth": "1966-12-09",
    "email": "grace.hopper@example.org",
    "phone": "+15035550199",
}
PROBLEM = "application/problem+json"


@dataclass
class Booking:
    app: FastAPI
    client: httpx.AsyncClient
    secret: str

    def token(self, role: str, subject: str | None = None) -> dict[str, str]:
        return bearer(self.secret, role, subject)

    async def written(self) -> tuple[int, int]:
        """(patient rows, outbox rows)."""
        engine = self.app.state.infra.engine
        return (
            await count_rows(engine, PatientRow.__table__),
            await count_rows(engine, INFRA.outbox),
        )


async def _booking(database_url: str, secret: str) -> AsyncIterator[Booking]:
    await migrate(SERVICE_DIR, database_url)
    app = create_app(BookingSettings(database_url=database_url), clock=FakeClock(NOW))
    try:
        async with api_client(app) as client:
            yield Booking(app, client, secret)
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()


@pytest.fixture
async def booking(database_url: str, jwt_secret: str) -> AsyncIterator[Booking]:
    async for service in _booking(database_url, jwt_secret):
        yield service


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "code"} <= body.keys()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    if code is not None:
        assert body["code"] == code
    return body


# Registration


async def test_a_scheduler_registers_a_patient_and_one_pii_free_event_is_queued(booking):
    response = await booking.client.post(PATIENTS, json=ADA, headers=booking.token("scheduler"))

    assert response.status_code == 201, response.text
    body = response.json()
    patient_id = uuid.UUID(body["id"])
    assert {k: body[k] for k in ADA} == ADA
    assert body["registered_by"] == "staff"
    assert datetime.fromisoformat(body["registered_at"]) == NOW

    fetched = await booking.client.get(
        f"{PATIENTS}/{patient_id}", headers=booking.token("clinician")
    )
    assert fetched.status_code == 200
    assert fetched.json() == body

    assert await booking.written() == (1, 1)
    [row] = await outbox_rows(booking.app.state.infra.engine, INFRA)
    assert row["event_type"] == "booking.patient.registered.v1"
    assert row["topic"] == "booking.events"
    assert row["message_key"] == str(patient_id)
    assert row["sent_at"] is None
    assert set(row["payload"]) == {"patient_id", "registered_at", "registered_by"}
    assert row["payload"]["patient_id"] == str(patient_id)
    assert row["payload"]["registered_by"] == "staff"
    assert datetime.fromisoformat(row["payload"]["registered_at"]) == NOW
    # Random ids are hex and may contain "ada" or "1984" by chance; mask them first.
    serialized = UUID_TEXT.sub("<id>", json.dumps(row, default=str).lower())
    for personal in (*ADA.values(), "ada", "lovelace", "5550100", "1984"):
        assert personal.lower() not in serialized


async def test_a_patient_self_registers_under_the_id_their_token_carries(booking):
    patient_id = str(uuid.uuid4())
    headers = booking.token("patient", patient_id)

    response = await booking.client.post(PATIENTS, json=ADA, headers=headers)

    assert response.status_code == 201, response.text
    assert response.json()["id"] == patient_id
    assert response.json()["registered_by"] == "patient"
    [row] = await outbox_rows(booking.app.state.infra.engine, INFRA)
    assert row["message_key"] == patient_id
    assert row["payload"]["registered_by"] == "patient"


async def test_registering_twice_with_the_same_patient_token_is_a_conflict(booking):
    headers = booking.token("patient", str(uuid.uuid4()))
    assert (await booking.client.post(PATIENTS, json=ADA, headers=headers)).status_code == 201

    again = await booking.client.post(PATIENTS, json=GRACE, headers=headers)

    assert_problem(again, 409, "patient_exists")
    assert await booking.written() == (1, 1)


async def test_a_patient_token_whose_subject_is_not_a_uuid_cannot_register(booking):
    response = await booking.client.post(
        PATIENTS, json=ADA, headers=booking.token("patient", "not-a-uuid")
    )
    assert_problem(response, 403, "forbidden")
    assert await booking.written() == (0, 0)


def _without(field: str) -> dict[str, str]:
    return {k: v for k, v in ADA.items() if k != field}


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "missing-field": ({"json": _without("phone")}, 422, "validation_error"),
    "empty-name": ({"json": {**ADA, "first_name": ""}}, 422, "validation_error"),
    "bad-email": ({"json": {**ADA, "email": "ada-at-example"}}, 422, "validation_error"),
    "phone-not-e164": ({"json": {**ADA, "phone": "503-555-0100"}}, 422, "validation_error"),
    "birth-date-in-future": (
        {"json": {**ADA, "date_of_birth": "2027-01-01"}},
        422,
        "invalid_patient",
    ),
    "birth-date-today": ({"json": {**ADA, "date_of_birth": "2026-11-20"}}, 422, "invalid_patient"),
    "unknown-field": ({"json": {**ADA, "ssn": "123-45-6789"}}, 422, "validation_error"),
    "not-json": (
        {"content": b'{"first_name": "Ada",', "headers": {"content-type": "application/json"}},
        422,
        "validation_error",
    ),
    "json-array": ({"json": [ADA]}, 422, "validation_error"),
    "wrong-content-type": (
        {"content": json.dumps(ADA).encode(), "headers": {"content-type": "text/plain"}},
        422,
        "validation_error",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
async def test_bad_input_is_a_problem_and_writes_nothing(booking, case):
    request, status, code = BAD_REQUESTS[case]
    headers = {**request.pop("headers", {}), **booking.token("scheduler")}

    response = await booking.client.post(PATIENTS, headers=headers, **request)

    body = assert_problem(response, status, code)
    assert 400 <= body["status"] < 500
    assert await booking.written() == (0, 0)


async def test_validation_problems_do_not_echo_the_rejected_input(booking):
    response = await booking.client.post(
        PATIENTS,
        json={**ADA, "email": "secret-address-at-nowhere"},
        headers=booking.token("scheduler"),
    )
    body = assert_problem(response, 422, "validation_error")
    assert any("email" in error["loc"] for error in body["errors"])
    assert "secret-address-at-nowhere" not in response.text


# Auth


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer "],
    ids=["no-token", "garbage-token", "not-bearer", "empty-bearer"],
)
async def test_registering_without_a_valid_token_is_401(booking, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await booking.client.post(PATIENTS, json=ADA, headers=headers)
    assert_problem(response, 401)
    assert await booking.written() == (0, 0)


async def test_a_token_signed_with_another_secret_is_401(booking):
    forged = issue_token("another-secret-0123456789-0123456789-01234567", "scheduler")
    response = await booking.client.post(
        PATIENTS, json=ADA, headers={"Authorization": f"Bearer {forged}"}
    )
    assert_problem(response, 401, "invalid_token")
    assert await booking.written() == (0, 0)


@pytest.mark.parametrize("role", ["clinician", "billing", "service"])
async def test_roles_other_than_patient_and_scheduler_cannot_register_patients(booking, role):
    response = await booking.client.post(PATIENTS, json=ADA, headers=booking.token(role))
    assert_problem(response, 403, "forbidden")
    assert await booking.written() == (0, 0)


async def test_reading_a_patient_without_a_token_is_401(booking):
    response = await booking.client.get(f"{PATIENTS}/{uuid.uuid4()}")
    assert_problem(response, 401, "unauthenticated")


async def test_a_patient_reads_only_their_own_record(booking):
    own_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    own, other = booking.token("patient", own_id), booking.token("patient", other_id)
    assert (await booking.client.post(PATIENTS, json=ADA, headers=own)).status_code == 201
    assert (await booking.client.post(PATIENTS, json=GRACE, headers=other)).status_code == 201

    mine = await booking.client.get(f"{PATIENTS}/{own_id}", headers=own)
    theirs = await booking.client.get(f"{PATIENTS}/{other_id}", headers=own)
    missing = await booking.client.get(f"{PATIENTS}/{uuid.uuid4()}", headers=own)

    assert mine.status_code == 200
    assert mine.json()["id"] == own_id
    assert mine.json()["email"] == ADA["email"]
    hidden = assert_problem(theirs, 404, "not_found")
    absent = assert_problem(missing, 404, "not_found")
    assert {k: v for k, v in hidden.items() if k != "instance"} == {
        k: v for k, v in absent.items() if k != "instance"
    }
    assert GRACE["email"] not in theirs.text


@pytest.mark.parametrize("role", ["scheduler", "clinician", "billing", "admin"])
async def test_staff_read_any_patient(booking, role):
    patient_id = str(uuid.uuid4())
    created = await booking.client.post(
        PATIENTS, json=ADA, headers=booking.token("patient", patient_id)
    )
    assert created.status_code == 201

    response = await booking.client.get(f"{PATIENTS}/{patient_id}", headers=booking.token(role))

    assert response.status_code == 200
    assert response.json() == created.json()


async def test_staff_reading_a_missing_patient_get_404(booking):
    response = await booking.client.get(
        f"{PATIENTS}/{uuid.uuid4()}", headers=booking.token("scheduler")
    )
    assert_problem(response, 404, "not_found")


async def test_a_malformed_patient_id_is_a_422_problem(booking):
    response = await booking.client.get(f"{PATIENTS}/42", headers=booking.token("scheduler"))
    assert_problem(response, 422, "validation_error")


# Idempotency-Key


async def test_the_same_key_and_body_replays_the_first_answer(booking):
    headers = {**booking.token("scheduler", "scheduler-a"), "Idempotency-Key": "reg-1"}

    first = await booking.client.post(PATIENTS, json=ADA, headers=headers)
    second = await booking.client.post(PATIENTS, json=ADA, headers=headers)

    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert await booking.written() == (1, 1)


async def test_the_same_key_with_another_body_is_422_and_writes_nothing(booking):
    headers = {**booking.token("scheduler", "scheduler-a"), "Idempotency-Key": "reg-1"}
    assert (await booking.client.post(PATIENTS, json=ADA, headers=headers)).status_code == 201

    reused = await booking.client.post(PATIENTS, json=GRACE, headers=headers)

    assert_problem(reused, 422, "idempotency_key_reused")
    assert await booking.written() == (1, 1)


async def test_concurrent_requests_with_one_key_create_one_patient(booking):
    headers = {**booking.token("scheduler", "scheduler-a"), "Idempotency-Key": "reg-race"}

    responses = await asyncio.gather(
        *(booking.client.post(PATIENTS, json=ADA, headers=headers) for _ in range(4))
    )

    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 3
    assert await booking.written() == (1, 1)
    assert await count_rows(booking.app.state.infra.engine, INFRA.idempotency) == 1


async def test_concurrent_self_registrations_with_one_key_create_one_patient(booking):
    patient_id = str(uuid.uuid4())
    headers = {**booking.token("patient", patient_id), "Idempotency-Key": "self-race"}

    responses = await asyncio.gather(
        *(booking.client.post(PATIENTS, json=ADA, headers=headers) for _ in range(2))
    )

    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert {r.json()["id"] for r in responses} == {patient_id}
    assert await booking.written() == (1, 1)


async def test_concurrent_self_registrations_without_a_key_answer_201_and_409(booking):
    headers = booking.token("patient", str(uuid.uuid4()))

    responses = await asyncio.gather(
        *(booking.client.post(PATIENTS, json=ADA, headers=headers) for _ in range(2))
    )

    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert await booking.written() == (1, 1)


async def test_an_idempotency_key_is_scoped_to_its_caller(booking):
    key = {"Idempotency-Key": "shared-key"}
    first = await booking.client.post(
        PATIENTS, json=ADA, headers={**booking.token("scheduler", "scheduler-a"), **key}
    )
    second = await booking.client.post(
        PATIENTS, json=ADA, headers={**booking.token("scheduler", "scheduler-b"), **key}
    )

    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert await booking.written() == (2, 2)


async def test_an_overlong_idempotency_key_is_refused(booking):
    headers = {**booking.token("scheduler"), "Idempotency-Key": "k" * 201}
    response = await booking.client.post(PATIENTS, json=ADA, headers=headers)
    assert_problem(response, 400, "invalid_idempotency_key")
    assert await booking.written() == (0, 0)


# Operations and framework answers


async def test_an_unknown_path_is_a_404_problem(booking):
    response = await booking.client.get("/v1/nothing-here", headers=booking.token("admin"))
    assert_problem(response, 404, "not_found")


async def test_a_wrong_method_is_a_405_problem(booking):
    response = await booking.client.delete(PATIENTS, headers=booking.token("admin"))
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_healthz_answers_ok(booking):
    response = await booking.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "booking"}


async def test_metrics_count_requests_by_route_and_status(booking):
    await booking.client.get(f"{PATIENTS}/{uuid.uuid4()}", headers=booking.token("scheduler"))

    response = await booking.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counted = [
        line
        for line in response.text.splitlines()
        if line.startswith("http_requests_total{")
        and 'route="/v1/patients/{patient_id}"' in line
        and 'status="404"' in line
    ]
    assert len(counted) == 1
    assert float(counted[0].rsplit(" ", 1)[1]) == 1.0


async def test_a_correlation_id_is_echoed_and_carried_into_the_outbox(booking):
    response = await booking.client.post(
        PATIENTS,
        json=ADA,
        headers={**booking.token("scheduler"), "X-Correlation-ID": "corr-from-the-front-end"},
    )
    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "corr-from-the-front-end"
    [row] = await outbox_rows(booking.app.state.infra.engine, INFRA)
    assert row["correlation_id"] == "corr-from-the-front-end"


async def test_a_correlation_id_is_generated_when_absent(booking):
    first = await booking.client.get("/healthz")
    second = await booking.client.get("/healthz")
    assert first.headers["x-correlation-id"]
    assert second.headers["x-correlation-id"]
    assert first.headers["x-correlation-id"] != second.headers["x-correlation-id"]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_readyz_is_a_503_problem_when_kafka_is_unreachable(
    database_url, jwt_secret, monkeypatch
):
    monkeypatch.setenv("CLINIC_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    async for service in _booking(database_url, jwt_secret):
        response = await service.client.get("/readyz")
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"] == {"database": True, "kafka": False}

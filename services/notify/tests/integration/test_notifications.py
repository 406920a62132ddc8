"""Notify applies booking's `patient registered` events once and shows patients their messages.

Events go through notify's real handler registry inside a unit of work that claims the inbox
first, as the Kafka consumer does; the producer's committed samples go through the consumer's
own `process()` from a CloudEvents Kafka record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

import clinic_shared.contracts
from clinic_shared.consumer import EventConsumer, EventContext
from clinic_shared.contracts import booking as booking_events
from clinic_shared.contracts.registry import topic_for
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.testing import FakeClock, api_client, bearer, count_rows, migrate
from clinic_shared.testing import apply_once as shared_apply_once
from clinic_shared.uow import UnitOfWorkFactory
from notify.adapters.orm import INFRA, MessageRow
from notify.config import NotifySettings
from notify.domain.model import DEFAULT_CHANNELS, Preferences
from notify.entrypoints.api import create_app
from notify.entrypoints.cli import SERVICE_DIR
from notify.entrypoints.consumer import event_handlers
from notify.service_layer.scheduling import on_patient_registered, repository

CONSUMER = "notify"
REGISTERED_AT = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 17, 9, 30, tzinfo=UTC)
NOTIFICATION = MessageRow.__table__
EVENT_HANDLERS = event_handlers(None)  # type: ignore[arg-type] # registration asks no directory
PROBLEM = "application/problem+json"
SAMPLES = sorted(
    (
        Path(clinic_shared.contracts.__file__).parent
        / "samples"
        / booking_events.PatientRegistered.event_type
    ).glob("*.json")
)


@dataclass
class Notify:
    app: FastAPI
    client: httpx.AsyncClient
    secret: str

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.app.state.infra.uow_factory

    async def notifications(self) -> list[dict[str, Any]]:
        async with self.app.state.infra.engine.connect() as conn:
            rows = await conn.execute(sa.select(NOTIFICATION).order_by(NOTIFICATION.c.due_at))
            return [dict(r) for r in rows.mappings()]

    async def inbox_rows(self) -> int:
        return await count_rows(self.app.state.infra.engine, INFRA.inbox)


@pytest.fixture
async def notify(database_url: str, jwt_secret: str) -> AsyncIterator[Notify]:
    await migrate(SERVICE_DIR, database_url)
    app = create_app(NotifySettings(database_url=database_url), clock=FakeClock(NOW))
    try:
        async with api_client(app) as client:
            yield Notify(app, client, jwt_secret)
    finally:
        await app.state.broker_probe.close()
        await app.state.infra.dispose()


def patient_registered(patient_id: uuid.UUID, registered_by: str = "patient") -> Envelope:
    event = booking_events.PatientRegistered(
        patient_id=patient_id, registered_at=REGISTERED_AT, registered_by=registered_by
    )
    return Envelope.wrap(event, occurred_at=REGISTERED_AT, correlation_id="corr-1")


async def apply_once(uow_factory: UnitOfWorkFactory, envelope: Envelope) -> bool:
    return await shared_apply_once(uow_factory, envelope, EVENT_HANDLERS, CONSUMER)


# Applying events


async def test_a_registered_patient_gets_one_welcome_email_due_at_once(notify):
    patient_id = uuid.uuid4()
    envelope = patient_registered(patient_id)

    assert await apply_once(notify.uow_factory, envelope) is True

    [row] = await notify.notifications()
    assert row["patient_id"] == patient_id
    assert (row["kind"], row["channel"], row["status"]) == ("welcome", "email", "scheduled")
    assert row["due_at"] == NOW  # registered minutes ago: due now, never in the past
    assert row["planned_at"] == REGISTERED_AT
    assert row["created_at"] == NOW
    assert row["dedupe_key"] == f"welcome:{patient_id}:email"
    assert await notify.inbox_rows() == 1


async def test_the_same_event_applied_again_creates_nothing_more(notify):
    envelope = patient_registered(uuid.uuid4())
    assert await apply_once(notify.uow_factory, envelope) is True

    assert await apply_once(notify.uow_factory, envelope) is False

    assert len(await notify.notifications()) == 1
    assert await notify.inbox_rows() == 1


async def test_two_registrations_make_two_welcome_emails(notify):
    first, second = uuid.uuid4(), uuid.uuid4()
    await apply_once(notify.uow_factory, patient_registered(first))
    await apply_once(notify.uow_factory, patient_registered(second, registered_by="staff"))

    rows = await notify.notifications()
    assert {row["patient_id"] for row in rows} == {first, second}
    assert await notify.inbox_rows() == 2


def test_the_producer_has_committed_a_patient_registered_sample():
    assert SAMPLES, "booking.patient.registered.v1 needs a committed sample payload"


class _NoKafkaConsumer:
    """`process()` never touches the Kafka consumer; anything else would be a surprise."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the consumer touched Kafka: {name}")


class _RecordingDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        self.sent.append((topic, kwargs))


def _kafka_record(envelope: Envelope, offset: int) -> ConsumerRecord[bytes, bytes]:
    key, value, headers = to_kafka(envelope)
    return ConsumerRecord(
        topic=topic_for(envelope.producer),
        partition=0,
        offset=offset,
        timestamp=int(envelope.occurred_at.timestamp() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=headers,
    )


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
async def test_the_producers_sample_goes_through_the_real_consumer_once(notify, sample):
    payload = json.loads(sample.read_text())
    envelope = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=booking_events.PatientRegistered.event_type,
        producer="booking",
        occurred_at=REGISTERED_AT,
        key=payload["patient_id"],
        payload=payload,
    )
    dead_letters = _RecordingDeadLetters()
    consumer = EventConsumer(
        name=CONSUMER,
        consumer=_NoKafkaConsumer(),  # type: ignore[arg-type]
        dlt_producer=dead_letters,  # type: ignore[arg-type]
        handlers=EVENT_HANDLERS,
        uow_factory=notify.uow_factory,
        max_transient_attempts=1,
    )

    assert await consumer.process(_kafka_record(envelope, offset=7)) is True
    assert await consumer.process(_kafka_record(envelope, offset=8)) is True

    assert dead_letters.sent == []
    assert (consumer.applied, consumer.duplicates) == (1, 1)
    [row] = await notify.notifications()
    assert str(row["patient_id"]) == payload["patient_id"]
    assert row["kind"] == "welcome"
    assert row["planned_at"] == datetime.fromisoformat(payload["registered_at"])
    assert await notify.inbox_rows() == 1


# Reading notifications


def _url(patient_id: object) -> str:
    return f"/v1/patients/{patient_id}/notifications"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "code"} <= body.keys()
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.fixture
async def welcomed(notify: Notify) -> uuid.UUID:
    patient_id = uuid.uuid4()
    await apply_once(notify.uow_factory, patient_registered(patient_id))
    return patient_id


async def test_a_patient_sees_their_own_notifications(notify, welcomed):
    response = await notify.client.get(
        _url(welcomed), headers=bearer(notify.secret, "patient", str(welcomed))
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient_id"] == str(welcomed)
    [message] = body["notifications"]
    assert (message["kind"], message["channel"], message["status"]) == (
        "welcome",
        "email",
        "scheduled",
    )
    assert datetime.fromisoformat(message["due_at"]) == NOW
    uuid.UUID(message["id"])


async def test_another_patient_gets_404_for_someone_elses_notifications(notify, welcomed):
    response = await notify.client.get(
        _url(welcomed), headers=bearer(notify.secret, "patient", str(uuid.uuid4()))
    )
    assert_problem(response, 404, "not_found")
    assert "welcome" not in response.text


@pytest.mark.parametrize("role", ["scheduler", "clinician", "billing", "admin"])
async def test_staff_see_a_patients_notifications(notify, welcomed, role):
    response = await notify.client.get(_url(welcomed), headers=bearer(notify.secret, role))
    assert response.status_code == 200, response.text
    assert [n["kind"] for n in response.json()["notifications"]] == ["welcome"]


async def test_a_patient_with_no_notifications_gets_an_empty_list(notify, welcomed):
    other = uuid.uuid4()
    response = await notify.client.get(_url(other), headers=bearer(notify.secret, "scheduler"))
    assert response.status_code == 200
    assert response.json() == {"patient_id": str(other), "notifications": []}


async def test_reading_notifications_without_a_token_is_401(notify, welcomed):
    response = await notify.client.get(_url(welcomed))
    assert_problem(response, 401, "unauthenticated")


async def test_a_malformed_patient_id_is_a_422_problem(notify):
    response = await notify.client.get(
        _url("not-a-uuid"), headers=bearer(notify.secret, "scheduler")
    )
    body = assert_problem(response, 422, "validation_error")
    assert any("patient_id" in error["loc"] for error in body["errors"])


async def test_registrations_applied_as_a_batch_get_the_welcomes_one_by_one_would(notify):
    quiet_a1, quiet_a2, plain_b1, plain_b2 = (uuid.uuid4() for _ in range(4))
    async with notify.uow_factory() as uow:
        for patient in (quiet_a1, quiet_a2):  # their own quiet hours cover the clinic's morning
            own = Preferences(patient, DEFAULT_CHANNELS, quiet_start="08:00", quiet_end="12:00")
            await repository(uow).put_preferences(own, NOW)
        await uow.commit()
    batch = []
    for offset, patient in enumerate((quiet_a1, plain_b1)):
        envelope = patient_registered(patient)
        event = booking_events.PatientRegistered.model_validate(envelope.payload)
        batch.append((event, EventContext(envelope, "booking.events", 0, offset)))
    async with notify.uow_factory() as uow:
        await on_patient_registered.many(batch, uow)
        await uow.commit()
    for patient in (quiet_a2, plain_b2):
        assert await apply_once(notify.uow_factory, patient_registered(patient)) is True

    rows = {row["patient_id"]: row for row in await notify.notifications()}
    assert len(rows) == 4
    facts = {p: (row["kind"], row["channel"], row["due_at"]) for p, row in rows.items()}
    assert facts[quiet_a1] == facts[quiet_a2] != facts[plain_b1] == facts[plain_b2]
    assert facts[plain_b1] == ("welcome", "email", NOW)

"""The waitlist over real Kafka and PostgreSQL, all four services as processes (two waitlist
consumers in one group): a cancelled course's remaining series reaches the waiting patient,
is accepted and booked once; decline and expiry move it on; redelivering every event changes
nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from clinic_shared.auth import Role
from clinic_shared.clock import FakeClock
from clinic_shared.contracts.registry import topic_for
from clinic_shared.db import create_engine
from clinic_shared.duequeue import drain
from clinic_shared.kafka import make_producer
from clinic_shared.testing import read_topic
from waitlist.bootstrap import bootstrap
from waitlist.config import WaitlistSettings
from waitlist.service_layer.offers import OfferExpiry

from .conftest import System, caught_up, cleared_patient, count_sql, eventually, make_system

pytestmark = pytest.mark.slow

CLINIC_TZ = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def clinic(postgres_cluster, kafka_bootstrap, tmp_path_factory) -> Iterator[System]:
    run = uuid.uuid4().hex[:8]
    system = make_system(
        postgres_cluster,
        kafka_bootstrap,
        tmp_path_factory.mktemp("e2e-waitlist-logs"),
        group=f"e2e-{run}",
        topic_prefix=f"e2e-{run}.",
    )
    system.env["WAITLIST_DISPATCHER_POLL_INTERVAL_SECONDS"] = "0.2"
    try:
        for service in ("booking", "waitlist", "billing", "notify"):
            for role in ("api", "relay", "consumer"):
                system.start(service, role)
        system.start("waitlist", "consumer")  # a second consumer in the same group
        system.start("waitlist", "dispatcher")
        yield system
    finally:
        system.stop_all()


class Flow:
    def __init__(self, client: httpx.AsyncClient, system: System) -> None:
        self.client, self.system = client, system
        self.booking, self.waitlist = system.urls["booking"], system.urls["waitlist"]
        self.scheduler = system.headers(Role.SCHEDULER)

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.system.headers(Role.PATIENT, patient_id)

    async def cleared_patient(self) -> str:
        patient = await cleared_patient(
            self.client, self.system, first_name="Wait", last_name="Lister", phone="+15035550166"
        )
        return str(patient["id"])

    async def book_course(self, patient_id: str, skip: int = 0) -> list[dict]:
        found = await self.client.get(
            f"{self.booking}/v1/availability",
            params={"protocol": "mood_induction", "patient_id": patient_id, "limit": skip + 1},
            headers=self.scheduler,
        )
        option = found.json()["options"][skip]
        course = await self.client.post(
            f"{self.booking}/v1/courses",
            json={"patient_id": patient_id, "protocol": "mood_induction", "slots": option["slots"]},
            headers=self.scheduler,
        )
        assert course.status_code == 201, course.text
        return list(course.json()["appointments"])

    async def wait_for(self, patient_id: str, slots: list[dict]) -> str:
        """An entry whose preferences fit exactly these slots' weekdays and times."""
        local = [
            (
                datetime.fromisoformat(s["start"]).astimezone(CLINIC_TZ),
                datetime.fromisoformat(s["end"]).astimezone(CLINIC_TZ),
            )
            for s in slots
        ]
        days = sorted({start.strftime("%a").lower() for start, _ in local})
        window = {
            "start_time": min(start.time() for start, _ in local).isoformat("minutes"),
            "end_time": max(end.time() for _, end in local).isoformat("minutes"),
        }
        response = await self.client.post(
            f"{self.waitlist}/v1/entries",
            json={
                "patient_id": patient_id,
                "protocol": "mood_induction",
                "earliest_start": datetime.now(UTC).date().isoformat(),
                "preferences": {"weekdays": days, "windows": [window]},
            },
            headers=self.scheduler,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def cancel(self, patient_id: str, appointment_id: str) -> dict:
        response = await self.client.post(
            f"{self.booking}/v1/appointments/{appointment_id}/cancel",
            json={"reason": "e2e", "acknowledge_late_fee": True},
            headers=self.patient(patient_id),
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def offers(self, patient_id: str, status: str | None = None) -> list[dict]:
        response = await self.client.get(
            f"{self.waitlist}/v1/offers",
            params={"status": status} if status else {},
            headers=self.patient(patient_id),
        )
        assert response.status_code == 200, response.text
        return list(response.json()["offers"])

    async def offer_for(self, patient_id: str, status: str = "open", timeout: float = 30) -> dict:
        found: list[dict] = []

        async def offered() -> bool:
            found[:] = await self.offers(patient_id, status)
            return bool(found)

        await eventually(offered, timeout, f"an {status} offer")
        [offer] = found
        return offer


def _times(slots: list[dict]) -> set[tuple[str, datetime]]:
    return {(s["chair_id"], datetime.fromisoformat(s["start"])) for s in slots}


async def _occupancies_never_overlap(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT resource_id, start_at, end_at FROM appointment WHERE status IN "
                        "('booked', 'held', 'checked_in', 'completed') ORDER BY 1, 2"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    for (chair_a, _, end), (chair_b, start, _) in pairwise(rows):
        assert chair_a != chair_b or end <= start, f"{chair_a} double-booked"


async def test_a_cancelled_series_reaches_the_waiting_patient_who_accepts_it_once(clinic):
    async with httpx.AsyncClient(timeout=30) as client:
        flow = Flow(client, clinic)
        a, b = await flow.cleared_patient(), await flow.cleared_patient()
        course = await flow.book_course(a)
        remaining = course[1:]
        await flow.wait_for(b, remaining)

        cancelled = await flow.cancel(a, course[0]["id"])
        assert sorted(cancelled["released_appointment_ids"]) == sorted(s["id"] for s in remaining)
        offer = await flow.offer_for(b, timeout=20)
        # Booking holds the same chairs at the same times (as held occupancies of its own).
        assert _times(offer["slots"]) == _times(remaining)

        accepted = await client.post(
            f"{flow.waitlist}/v1/offers/{offer['id']}/accept", headers=flow.patient(b)
        )
        assert accepted.status_code == 202, accepted.text
        booked = await flow.offer_for(b, "accepted")
        mine = await client.get(
            f"{flow.booking}/v1/appointments",
            params={"patient_id": b, "status": "booked"},
            headers=flow.patient(b),
        )
        appointments = mine.json()["appointments"]
        assert sorted(a["id"] for a in appointments) == sorted(
            s["appointment_id"] for s in offer["slots"]
        )
        assert _times(appointments) == _times(remaining)
        assert {a["course_id"] for a in appointments} == {booked["course_id"]}
        await _occupancies_never_overlap(clinic.database_urls["booking"])
        block_offers = await count_sql(
            clinic.database_urls["waitlist"],
            f"SELECT count(*) FROM offer WHERE block_id = '{offer['block_id']}'",
        )
        assert block_offers == 1  # two consumers, one offer


async def test_decline_and_expiry_move_the_series_on(clinic):
    async with httpx.AsyncClient(timeout=30) as client:
        flow = Flow(client, clinic)
        a = await flow.cleared_patient()
        waiting = [await flow.cleared_patient() for _ in range(3)]
        course = await flow.book_course(a, skip=3)
        for patient in waiting:
            await flow.wait_for(patient, course[1:])
        await flow.cancel(a, course[0]["id"])

        first = await flow.offer_for(waiting[0])
        declined = await client.post(
            f"{flow.waitlist}/v1/offers/{first['id']}/decline", headers=flow.patient(waiting[0])
        )
        assert declined.status_code == 200, declined.text
        second = await flow.offer_for(waiting[1])
        assert second["block_id"] == first["block_id"]

        # The dispatcher's due-queue, run with a clock past the expiry: no real waiting.
        settings = WaitlistSettings(database_url=clinic.database_urls["waitlist"])
        later = FakeClock(datetime.now(UTC) + timedelta(hours=3))
        infra = bootstrap(settings, later)
        try:
            assert await drain([OfferExpiry()], infra.uow_factory) >= 1
        finally:
            await infra.dispose()
        assert (await flow.offers(waiting[1]))[0]["status"] == "expired"
        third = await flow.offer_for(waiting[2])
        assert third["block_id"] == first["block_id"]


async def test_every_event_delivered_again_changes_nothing(clinic, kafka_bootstrap):
    prefix = clinic.env["CLINIC_TOPIC_PREFIX"]
    groups = {
        "booking": clinic.env["WAITLIST_CONSUMER_GROUP"],
        "waitlist": clinic.env["BOOKING_CONSUMER_GROUP"],
    }
    topics = {name: prefix + topic_for(name) for name in ("booking", "waitlist")}
    databases = clinic.database_urls
    counts = {
        "offers": "SELECT count(*) FROM offer",
        "offer states": "SELECT count(*) FROM offer WHERE status IN ('open', 'accepted')",
    }

    async def settled() -> bool:
        """Each topic's consumer (waitlist's of booking's events, booking's of waitlist's) has
        committed up to the end."""
        for name, topic in topics.items():
            if not await caught_up(kafka_bootstrap, groups[name], topic):
                return False
        return True

    await eventually(settled, 60, "consumers caught up")
    before = {k: await count_sql(databases["waitlist"], sql) for k, sql in counts.items()}
    booked_before = await count_sql(
        databases["booking"], "SELECT count(*) FROM appointment WHERE status = 'booked'"
    )
    outbox_before = {
        s: await count_sql(databases[s], "SELECT count(*) FROM outbox") for s in topics
    }

    producer = make_producer(kafka_bootstrap, client_id="e2e-redeliver")
    await producer.start()
    try:
        for topic in topics.values():
            for record in await read_topic(kafka_bootstrap, topic):
                await producer.send_and_wait(
                    topic, value=record.value, key=record.key, headers=list(record.headers)
                )
    finally:
        await producer.stop()
    await eventually(settled, 60, "consumers caught up with the redelivered events")

    assert {k: await count_sql(databases["waitlist"], sql) for k, sql in counts.items()} == before
    booked_after = await count_sql(
        databases["booking"], "SELECT count(*) FROM appointment WHERE status = 'booked'"
    )
    assert booked_after == booked_before
    assert {s: await count_sql(databases[s], "SELECT count(*) FROM outbox") for s in topics} == (
        outbox_before
    )

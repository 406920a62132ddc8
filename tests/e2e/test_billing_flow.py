"""Billing over real Kafka and PostgreSQL, with booking and billing as real processes: a
completed infusion becomes one card payment even when the dispatcher dies between the
processor's answer and billing's commit, and booking's events delivered again charge nothing
more.

Check-in opens on the appointment's clinic-local day, so this system's clinic keeps a fixed
offset zone in which it is just after midnight now, and opens at 02:00 every day: the earliest
course then starts today (no later start finishes sooner), and staff can check its first
infusion in and complete it at once."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from billing.adapters.sandbox_gateway import SandboxGateway
from clinic_local.processes import ServiceProcess
from clinic_shared.auth import Role
from clinic_shared.contracts.registry import topic_for
from clinic_shared.faults import BILLING_AFTER_PROCESSOR_CHARGE
from clinic_shared.kafka import make_producer
from clinic_shared.policy import load_policy
from clinic_shared.testing import read_topic

from ..phi import scan_logs, scan_records
from .conftest import (
    System,
    caught_up,
    cleared_patient,
    count_sql,
    eventually,
    make_system,
    wait_for_file,
)

pytestmark = pytest.mark.slow

MOOD_FIRST_INFUSION_CENTS = 60000
DIAGNOSIS = "F33.1"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _just_after_midnight_zone(now: datetime) -> str:
    """A fixed-offset IANA zone (`Etc/GMT-N` is UTC+N) in which it is 00:xx now."""
    offset = -now.hour % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"


def _daily_hours_policy(path: Path) -> Path:
    hours = "\n".join(f'    {day}: [{{open: "02:00", close: "23:30"}}]' for day in WEEKDAYS)
    zone = _just_after_midnight_zone(datetime.now(UTC))
    path.write_text(f"clinic:\n  zone: {zone}\nbooking:\n  opening_hours:\n{hours}\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def clinic(postgres_cluster, kafka_bootstrap, tmp_path_factory) -> Iterator[System]:
    """booking and billing (api, consumer, relay); each test starts the dispatchers it needs."""
    run = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("e2e-billing-logs")
    system = make_system(
        postgres_cluster,
        kafka_bootstrap,
        logs,
        group=f"e2e-{run}",
        topic_prefix=f"e2e-{run}.",
    )
    system.env["CLINIC_POLICY_FILE"] = str(_daily_hours_policy(logs / "clinic-policy.yaml"))
    try:
        for service in ("booking", "billing"):
            for role in ("api", "relay", "consumer"):
                system.start(service, role)
        yield system
    finally:
        system.stop_all()


@asynccontextmanager
async def dispatching(system: System) -> AsyncIterator[ServiceProcess]:
    dispatcher = system.start("billing", "dispatcher")
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


class Flow:
    def __init__(self, client: httpx.AsyncClient, system: System) -> None:
        self.client, self.system = client, system
        self.booking, self.billing = system.urls["booking"], system.urls["billing"]
        self.scheduler = system.headers(Role.SCHEDULER)
        self.clinician = system.headers(Role.CLINICIAN, "dr-e2e")
        self.billing_staff = system.headers(Role.BILLING, "billing-e2e")
        self.zone = load_policy(system.env["CLINIC_POLICY_FILE"]).clinic.tz

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.system.headers(Role.PATIENT, patient_id)

    async def cleared_patient(self) -> str:
        patient = await cleared_patient(
            self.client,
            self.system,
            first_name="Card",
            last_name="Holder",
            date_of_birth="1982-08-21",
            diagnosis_codes=[DIAGNOSIS],
        )
        return str(patient["id"])

    async def book_mood_induction(self, patient_id: str) -> list[dict]:
        found = await self.client.get(
            f"{self.booking}/v1/availability",
            params={"protocol": "mood_induction", "patient_id": patient_id, "limit": 1},
            headers=self.scheduler,
        )
        assert found.status_code == 200, found.text
        [option] = found.json()["options"]
        first_day = datetime.fromisoformat(option["slots"][0]["start"]).astimezone(self.zone)
        assert first_day.date() == datetime.now(self.zone).date(), option
        course = await self.client.post(
            f"{self.booking}/v1/courses",
            json={"patient_id": patient_id, "protocol": "mood_induction", "slots": option["slots"]},
            headers=self.scheduler,
        )
        assert course.status_code == 201, course.text
        return sorted(course.json()["appointments"], key=lambda a: a["start"])

    async def save_card(self, patient_id: str, token: str = "pm_card_visa") -> None:
        saved = await self.client.post(
            f"{self.billing}/v1/patients/{patient_id}/payment-methods",
            json={"processor_token": token},
            headers=self.patient(patient_id),
        )
        assert saved.status_code == 201, saved.text

    async def infuse(self, appointment_id: str) -> None:
        """Staff check the patient in and complete the infusion."""
        url = f"{self.booking}/v1/appointments/{appointment_id}"
        checked_in = await self.client.post(f"{url}/check-in", headers=self.clinician)
        assert checked_in.status_code == 200, checked_in.text
        completed = await self.client.post(f"{url}/complete", json={}, headers=self.clinician)
        assert completed.status_code == 200, completed.text

    async def charges(self, patient_id: str) -> list[dict]:
        response = await self.client.get(
            f"{self.billing}/v1/patients/{patient_id}/charges", headers=self.billing_staff
        )
        assert response.status_code == 200, response.text
        return list(response.json())

    async def charge(self, charge_id: str) -> dict:
        response = await self.client.get(
            f"{self.billing}/v1/charges/{charge_id}", headers=self.billing_staff
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def ledger(self, patient_id: str) -> list[dict]:
        response = await self.client.get(
            f"{self.billing}/v1/patients/{patient_id}/ledger", headers=self.billing_staff
        )
        assert response.status_code == 200, response.text
        return list(response.json()["entries"])

    async def charge_in(self, patient_id: str, status: str, timeout: float = 60) -> dict:
        """The patient's one charge, once it has `status`."""
        found: list[dict] = []

        async def reached() -> bool:
            found[:] = await self.charges(patient_id)
            return [c["status"] for c in found] == [status]

        await eventually(reached, timeout, f"the patient's charge {status}")
        return found[0]

    async def first_infusion_owed(self) -> tuple[str, dict]:
        """A cleared patient with a card on file whose first mood infusion was given: the
        patient's id and billing's charge for it."""
        patient_id = await self.cleared_patient()
        course = await self.book_mood_induction(patient_id)
        await self.save_card(patient_id)
        await self.infuse(course[0]["id"])
        charge = await self.charge_in(patient_id, "pending")
        assert charge["appointment_id"] == course[0]["id"]
        return patient_id, charge


async def test_billing_killed_after_the_processor_charged_and_before_its_commit_charges_once(
    clinic: System, tmp_path
):
    sandbox = SandboxGateway(clinic.env["BILLING_SANDBOX_STORE"])
    async with httpx.AsyncClient(timeout=30) as client:
        flow = Flow(client, clinic)
        patient_id, charge = await flow.first_infusion_owed()
        assert charge["amount_cents"] == MOOD_FIRST_INFUSION_CENTS
        key = f"charge-{charge['id']}-1"

        marker = tmp_path / "fault"
        doomed = clinic.start(
            "billing",
            "dispatcher",
            CLINIC_FAULT_POINT=BILLING_AFTER_PROCESSOR_CHARGE,
            CLINIC_FAULT_MARKER=str(marker),
        )
        await wait_for_file(marker)
        doomed.kill()
        assert marker.read_text() == BILLING_AFTER_PROCESSOR_CHARGE

        # The processor took the payment; billing never wrote it down.
        [(taken_key, payment_id, amount, succeeded)] = sandbox.payments()
        assert (taken_key, amount, succeeded) == (key, MOOD_FIRST_INFUSION_CENTS, True)
        assert sandbox.requests(key) == 1
        assert await flow.ledger(patient_id) == []
        forgotten = await flow.charge(charge["id"])
        assert (forgotten["status"], forgotten["attempts"]) == ("pending", [])

        async with dispatching(clinic):
            paid = await flow.charge_in(patient_id, "paid")
        ledger = await flow.ledger(patient_id)
        attempts = (await flow.charge(charge["id"]))["attempts"]

    assert paid["id"] == charge["id"]
    assert [(e["kind"], e["charged_cents"], e["paid_cents"], e["charge_id"]) for e in ledger] == [
        ("charge", MOOD_FIRST_INFUSION_CENTS, MOOD_FIRST_INFUSION_CENTS, charge["id"])
    ]
    assert ledger[0]["balance_cents"] == 0
    assert sandbox.payments() == [(key, payment_id, MOOD_FIRST_INFUSION_CENTS, True)]  # still one
    assert sandbox.requests(key) == 2  # the same key presented again after the crash
    assert [(a["number"], a["idempotency_key"], a["succeeded"]) for a in attempts] == [
        (1, key, True)
    ]


async def test_every_booking_event_delivered_again_charges_nothing_more(
    clinic: System, kafka_bootstrap: str
):
    sandbox = SandboxGateway(clinic.env["BILLING_SANDBOX_STORE"])
    topic = clinic.env["CLINIC_TOPIC_PREFIX"] + topic_for("booking")
    group = clinic.env["BILLING_CONSUMER_GROUP"]
    booking_db, billing_db = clinic.database_urls["booking"], clinic.database_urls["billing"]
    counts = {
        "charges": "SELECT count(*) FROM charge",
        "attempts": "SELECT count(*) FROM charge_attempt",
        "ledger entries": "SELECT count(*) FROM ledger_entry",
        "waiting charges": "SELECT count(*) FROM charge WHERE status IN ('pending', 'retrying')",
    }

    async def billing_caught_up() -> bool:
        unsent = await count_sql(booking_db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return unsent == 0 and await caught_up(kafka_bootstrap, group, topic)

    async with httpx.AsyncClient(timeout=30) as client, dispatching(clinic):
        flow = Flow(client, clinic)
        patient_id, charge = await flow.first_infusion_owed()
        await flow.charge_in(patient_id, "paid")
        await eventually(billing_caught_up, 60, "billing caught up with booking's events")
        before = {name: await count_sql(billing_db, sql) for name, sql in counts.items()}
        payments_before = sandbox.payments()
        ledger_before = await flow.ledger(patient_id)

        records = await read_topic(kafka_bootstrap, topic)
        kinds = {dict(r.headers).get("ce_type", b"").decode() for r in records}
        assert "booking.infusion.completed.v1" in kinds
        producer = make_producer(kafka_bootstrap, client_id="e2e-billing-redeliver")
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(
                    topic, value=record.value, key=record.key, headers=list(record.headers)
                )
        finally:
            await producer.stop()
        await eventually(billing_caught_up, 60, "billing caught up with the delivered-again events")

        after = {name: await count_sql(billing_db, sql) for name, sql in counts.items()}
        charges_after = await flow.charges(patient_id)
        ledger_after = await flow.ledger(patient_id)

    assert before["charges"] >= 1
    assert before["waiting charges"] == 0
    assert after == before
    assert sandbox.payments() == payments_before
    assert [(c["id"], c["status"]) for c in charges_after] == [(charge["id"], "paid")]
    assert ledger_after == ledger_before


async def test_a_superbill_prints_what_booking_holds_and_billing_events_carry_none_of_it(
    clinic: System, kafka_bootstrap: str
):
    async with httpx.AsyncClient(timeout=30) as client, dispatching(clinic):
        flow = Flow(client, clinic)
        patient_id, _ = await flow.first_infusion_owed()
        await flow.charge_in(patient_id, "paid")
        today = datetime.now(flow.zone).date().isoformat()
        superbill = await client.get(
            f"{flow.billing}/v1/patients/{patient_id}/superbill",
            params={"from": today, "to": today},
            headers=flow.patient(patient_id),
        )
    assert superbill.status_code == 200, superbill.text
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(superbill.content)).pages)
    # from booking's internal API, over HTTP with a service token
    for printed in ("Card Holder", "08/21/1982", DIAGNOSIS, "96365", "$600.00"):
        assert printed in text, printed

    topic = clinic.env["CLINIC_TOPIC_PREFIX"] + topic_for("billing")
    records = [r for r in await read_topic(kafka_bootstrap, topic) if patient_id in str(r.value)]
    assert records, "billing published nothing for the patient"
    published = scan_records(records)
    assert not published.leaks, published.report()
    logged = scan_logs(sorted(clinic.log_dir.glob("billing-*.log")))
    assert logged.lines and not logged.leaks, logged.report()

"""Real service processes on the real broker and PostgreSQL server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from billing.entrypoints.cli import SERVICE_DIR as BILLING_DIR
from booking.entrypoints.cli import SERVICE_DIR as BOOKING_DIR
from booking.entrypoints.seed import DEMO_INTAKES, DEMO_PATIENTS
from clinic_local._util import free_port
from clinic_local.processes import ServiceProcess
from clinic_shared import migrations
from clinic_shared.auth import Role, issue_token
from clinic_shared.db import create_engine
from clinic_shared.kafka import make_consumer
from notify.entrypoints.cli import SERVICE_DIR as NOTIFY_DIR
from waitlist.entrypoints.cli import SERVICE_DIR as WAITLIST_DIR

from ..phi import SENT, Kind

SECRET = "e2e-secret-0123456789-0123456789-0123456789"
WEBHOOK_SECRET = "whsec_e2e_0123456789abcdef"
SMS_AUTH_TOKEN = "e2e-sms-auth-token-0123456789"
SENT.add(Kind.SECRET, SECRET, WEBHOOK_SECRET, SMS_AUTH_TOKEN)
SERVICE_DIRS = {
    "booking": BOOKING_DIR,
    "waitlist": WAITLIST_DIR,
    "billing": BILLING_DIR,
    "notify": NOTIFY_DIR,
}


@dataclass
class System:
    """Databases, settings and processes for the four services."""

    env: dict[str, str]
    urls: dict[str, str]
    database_urls: dict[str, str]
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)

    def start(self, service: str, command: str, **extra_env: str) -> ServiceProcess:
        process = ServiceProcess(service, command, {**self.env, **extra_env}, self.log_dir)
        self.processes.append(process.start())
        if command == "api":
            process.wait_http(self.urls[service] + "/healthz")
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def headers(self, role: Role, subject: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(SECRET, role, subject)}", **extra}


def make_system(
    postgres_cluster, kafka_bootstrap: str, log_dir: Path, group: str = "", topic_prefix: str = ""
) -> System:
    """One database per service; `topic_prefix` keeps this system's topics apart from others'
    on the shared broker."""
    env = {
        "CLINIC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLINIC_JWT_SECRET": SECRET,
        "CLINIC_TOPIC_PREFIX": topic_prefix,
    }
    urls, database_urls = {}, {}
    for service, service_dir in SERVICE_DIRS.items():
        url = postgres_cluster.create_database(f"e2e_{service}_{uuid.uuid4().hex[:8]}")
        migrations.upgrade(service_dir, url)
        port = free_port()
        prefix = service.upper()
        env[f"{prefix}_DATABASE_URL"] = url
        env[f"{prefix}_HTTP_PORT"] = str(port)
        env[f"{prefix}_RELAY_POLL_INTERVAL_SECONDS"] = "0.2"
        if group:
            env[f"{prefix}_CONSUMER_GROUP"] = f"{group}-{service}"
        urls[service] = f"http://127.0.0.1:{port}"
        database_urls[service] = url
    env["WAITLIST_BOOKING_URL"] = urls["booking"]
    env["BILLING_BOOKING_URL"] = urls["booking"]
    env["BILLING_SANDBOX_STORE"] = str(log_dir / "card-sandbox.db")
    env["BILLING_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    env["BILLING_DISPATCHER_POLL_INTERVAL_SECONDS"] = "0.2"
    env["NOTIFY_BOOKING_URL"] = urls["booking"]
    env["NOTIFY_OUTBOX_DIR"] = str(log_dir / "notify-outbox")
    env["NOTIFY_SMS_AUTH_TOKEN"] = SMS_AUTH_TOKEN
    env["NOTIFY_DISPATCHER_POLL_INTERVAL_SECONDS"] = "0.2"
    return System(env, urls, database_urls, log_dir)


@pytest.fixture(scope="module")
def system(postgres_cluster, kafka_bootstrap, tmp_path_factory) -> Iterator[System]:
    """booking api, notify api and notify consumer; each test starts the relays it needs."""
    built = make_system(postgres_cluster, kafka_bootstrap, tmp_path_factory.mktemp("e2e-logs"))
    try:
        built.start("booking", "api")
        built.start("notify", "api")
        built.start("notify", "consumer")
        yield built
    finally:
        built.stop_all()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.1)


async def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    async def exists() -> bool:
        return path.exists()

    await eventually(exists, timeout, f"{path.name} written")


PATIENT = {
    "first_name": "Rowan",
    "last_name": "Test",
    "date_of_birth": "1985-05-17",
    "email": "rowan.test@example.org",
    "phone": "+15035550199",
}
SENT.add_fields(PATIENT)  # test_run_command posts it without `register`


def _register_the_demo_clinic() -> None:
    """The run command (test_run_command) seeds the demo clinic: its patients' values are
    looked for in that run's output like any value a test sends."""
    for patient in DEMO_PATIENTS:
        SENT.add_fields(dataclasses.asdict(patient))
    for submitted, _ in DEMO_INTAKES:
        medications = [{"name": m.name, "class": m.medication_class} for m in submitted.medications]
        SENT.add_fields({**dataclasses.asdict(submitted), "medications": medications})


_register_the_demo_clinic()


async def register(
    client: httpx.AsyncClient,
    system: System,
    patient: Mapping[str, str] = PATIENT,
    **headers: str,
) -> dict:
    """`patient` registered by a scheduler: booking's answer."""
    SENT.add_fields(patient)
    response = await client.post(
        system.urls["booking"] + "/v1/patients",
        json=dict(patient),
        headers=system.headers(Role.SCHEDULER, **headers),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def notifications(client: httpx.AsyncClient, system: System, patient_id: str) -> list:
    response = await client.get(
        f"{system.urls['notify']}/v1/patients/{patient_id}/notifications",
        headers=system.headers(Role.PATIENT, patient_id),
    )
    assert response.status_code == 200, response.text
    return response.json()["notifications"]


async def count_sql(database_url: str, sql: str) -> int:
    """One number from a service's database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def caught_up(bootstrap_servers: str, group: str, topic: str) -> bool:
    """The group has committed every partition of `topic` up to its current end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="e2e-lag-probe")
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    if not partitions:
        return False  # no metadata yet: not known to be caught up
    probe = make_consumer(bootstrap_servers, f"e2e-lag-probe-{uuid.uuid4().hex[:8]}")
    await probe.start()
    try:
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    done = {tp: committed[tp].offset if tp in committed else 0 for tp in partitions}
    return all(done[tp] >= ends[tp] for tp in partitions)


SCREENING = dict.fromkeys(
    (
        "psychosis",
        "seizure_disorder",
        "aminophylline_use",
        "uncontrolled_hypertension",
        "unstable_cardiopulmonary_disease",
    ),
    False,
)
"""Every blocking screening question of the default policy, answered no."""
SENT.add_fields({"screening": SCREENING})


async def cleared_patient(
    client: httpx.AsyncClient,
    system: System,
    *,
    first_name: str = "Clarimond",
    last_name: str = "Osterhagen",
    date_of_birth: str = "1980-01-01",
    phone: str = "+15035550177",
    **intake: object,
) -> dict:
    """A patient registered by a scheduler, whose intake (condition mood unless `intake` says
    otherwise) a clinician cleared: booking's answer to the registration."""
    booking = system.urls["booking"]
    person = {
        "first_name": first_name,
        "last_name": last_name,
        "date_of_birth": date_of_birth,
        "email": f"p{uuid.uuid4().hex[:8]}@example.org",
        "phone": phone,
    }
    patient = await register(client, system, person)
    answers = {"condition": "mood", "screening": SCREENING, **intake}
    SENT.add_fields(answers)
    answered = await client.put(
        f"{booking}/v1/patients/{patient['id']}/intake",
        json=answers,
        headers=system.headers(Role.PATIENT, patient["id"]),
    )
    assert answered.status_code == 200, answered.text
    cleared = await client.post(
        f"{booking}/v1/patients/{patient['id']}/intake/clearance",
        json={"diagnosis_confirmed": True},
        headers=system.headers(Role.CLINICIAN, "dr-e2e"),
    )
    assert cleared.status_code == 200, cleared.text
    return patient

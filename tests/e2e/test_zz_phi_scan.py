"""The PHI scan of the end-to-end suite (last file of the directory, so it runs last): every
record on the session's broker and every process log the session wrote carries no name, date
of birth, phone number, e-mail address, diagnosis, medication, screening answer, card number,
processor token, JWT or secret. First, the scanner itself finds each kind where it hides and
leaves ids and times alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from clinic_shared.auth import Role, issue_token
from clinic_shared.contracts.booking import AppointmentBooked
from clinic_shared.contracts.registry import topic_for
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.kafka import dead_letter_topic, ensure_topics, make_producer
from clinic_shared.testing import read_topic

from ..phi import SENT, Kind, PhiScanner, process_logs, scan_kafka, scan_logs, scan_records
from .conftest import (
    SERVICE_DIRS,
    System,
    cleared_patient,
    count_sql,
    eventually,
    make_system,
    notifications,
    register,
)
from .test_billing_flow import Flow as BillingFlow
from .test_billing_flow import _daily_hours_policy
from .test_waitlist_flow import Flow as WaitlistFlow

PLANTED_PERSON = {
    "first_name": "Zebulon",
    "last_name": "Quackenbush",
    "date_of_birth": "1931-07-04",
    "email": "zeb.q@example.net",
    "phone": "+15035550123",
}
PLANTED_INTAKE = {
    "diagnosis_codes": ["F41.1"],
    "medications": [{"name": "Quetiapine", "class": "other"}],
    "screening": {"psychosis": True},
}
# (kind, text): registered values as a service could spell them, and values no test
# registered that only the patterns can find.
PLANTED = [
    (Kind.NAME, '{"first_name": "Zebulon"}'),
    (Kind.NAME, "patient Quackenbush checked in"),
    (Kind.DATE_OF_BIRTH, '{"dob": "07/04/1931"}'),
    (Kind.PHONE, "sms to +15035550123"),
    (Kind.PHONE, "call (971) 555-0142"),
    (Kind.EMAIL, "ZEB.Q@example.net"),
    (Kind.EMAIL, "someone.else@mail.clinic-example.com"),
    (Kind.DIAGNOSIS, "dx f41.1"),
    (Kind.DIAGNOSIS, "code M54.50"),
    (Kind.MEDICATION, "QUETIAPINE 25 mg"),
    (Kind.SCREENING, '{"psychosis": true}'),
    (Kind.CARD, "4000 0566 5566 5556"),
    (Kind.CARD, "number=5555-5555-5555-4444"),
    (Kind.PROCESSOR_TOKEN, "pm_card_visa"),
    (Kind.JWT, "token=" + issue_token("planted-secret-0123456789-0123456789", Role.SCHEDULER)),
    (Kind.BEARER, "Authorization: Bearer 0a1b2c3d4e5f6a7b8c9d0e1f"),
    (Kind.SECRET, "key sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
    (Kind.SECRET, "whsec_9f8e7d6c5b4a39281706"),
]


PLANTED_LOG = "planted.log"
"""Not named like a service's log (`process_logs`): the suite's scan leaves these to the tests
that plant them."""


@pytest.fixture
def scanner() -> PhiScanner:
    """A scanner of its own: what these tests plant is no patient of the suite."""
    planted = PhiScanner()
    planted.add_fields(PLANTED_PERSON)
    planted.add_fields(PLANTED_INTAKE)
    return planted


@dataclass
class Record:
    """A Kafka record as aiokafka hands it over."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "planted.booking.events"
    partition: int = 1
    offset: int = 7


@pytest.mark.parametrize(
    ("kind", "text"), PLANTED, ids=[f"{k.name}-{n}" for n, (k, _) in enumerate(PLANTED)]
)
def test_the_scanner_finds_each_kind_in_keys_values_headers_and_log_lines(
    scanner: PhiScanner, kind: Kind, text: str, tmp_path: Path
):
    planted = text.encode()
    records = [
        Record(key=planted, value=b"{}", offset=3),
        Record(key=b"k", value=planted, offset=4),
        Record(key=b"k", value=b"{}", headers=[("ce_id", b"1"), ("x-planted", planted)], offset=5),
    ]
    log = tmp_path / PLANTED_LOG
    log.write_text(f'{{"event": "started"}}\n{{"event": "{text}"}}\n')

    found = scan_records(records, scanner).leaks + scan_logs([log], scanner).leaks

    assert {(leak.where, leak.kind) for leak in found} >= {
        ("planted.booking.events[1]@3 key", kind),
        ("planted.booking.events[1]@4 value", kind),
        ("planted.booking.events[1]@5 header 'x-planted'", kind),
        (f"{log}:2", kind),
    }


def test_the_scanner_leaves_a_real_event_ids_times_and_masked_credentials_alone(
    scanner: PhiScanner, tmp_path: Path
):
    now = datetime.now(UTC)
    event = AppointmentBooked(
        appointment_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        protocol="mood_induction",
        family="mood",
        sequence=1,
        resource_id="chair-1",
        start=now,
        end=now,
        first_visit=True,
    )
    key, value, headers = to_kafka(
        Envelope.wrap(event, occurred_at=now, correlation_id=f"e2e-{uuid.uuid4()}")
    )
    log = tmp_path / PLANTED_LOG
    lines = [
        {"event": "charge paid", "payment_id": "pi_sandbox_4242424242424242", "cents": 60000},
        {"event": "request", "authorization": "Bearer [redacted]", "path": "/v1/patients"},
        {"event": "bearer token missing", "ts_ms": int(now.timestamp() * 1000)},
        {"database": "postgresql+asyncpg://postgres@127.0.0.1:40591/e2e_booking_1a2b3c4d"},
        {"event": "card_number_not_accepted", "status": 422, "brand": "visa", "last4": "4242"},
        {"event": "test run", "at": now.isoformat(), "offset": 1795272532, "kafka": "4.3.1"},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines))

    published = scan_records([Record(key, value, headers)], scanner)
    logged = scan_logs([log], scanner)

    assert (published.records, published.headers, logged.lines) == (1, len(headers), len(lines))
    assert published.leaks == logged.leaks == []


def test_a_report_says_where_and_what_without_the_value(scanner: PhiScanner, tmp_path: Path):
    log = tmp_path / PLANTED_LOG
    log.write_text('{"event": "ok"}\n{"event": "sent", "to": "Quackenbush"}\n')
    record = Record(key=b"k", value=b"{}", headers=[("ce_subject", b"1931-07-04")])

    report = (scan_records([record], scanner) + scan_logs([log], scanner)).report()

    assert f"planted.booking.events[1]@7 header 'ce_subject': {Kind.DATE_OF_BIRTH}" in report
    assert f"{log}:2: {Kind.NAME} Qu… (11 characters)" in report
    assert "Quackenbush" not in report and "1931-07-04" not in report


@pytest.mark.kafka
async def test_scan_kafka_reads_every_topic_and_partition_from_the_beginning(
    scanner: PhiScanner, kafka_bootstrap: str
):
    """Planted on a prefixed topic and its dead-letter topic, in a key, a value and a header.
    Only this test's scanner knows the planted values, so no other scan of the broker (this
    session's or one sharing the broker) counts them as leaks."""
    topic = f"phi-selftest-{uuid.uuid4().hex[:8]}.{topic_for('booking')}"
    dead = dead_letter_topic(topic)
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    producer = make_producer(kafka_bootstrap, client_id="phi-selftest")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"clean", partition=2)
        in_value = await producer.send_and_wait(topic, b'{"n": "Zebulon"}', key=b"k", partition=2)
        in_key = await producer.send_and_wait(topic, b"{}", key=b"Quackenbush", partition=0)
        in_header = await producer.send_and_wait(
            dead, b"{}", key=b"k", partition=1, headers=[("dlt.error", b"born 07/04/1931")]
        )
    finally:
        await producer.stop()

    everything = await scan_kafka(kafka_bootstrap, scanner=scanner)
    only_dead = await scan_kafka(kafka_bootstrap, [dead], scanner=scanner)

    # (earlier runs' planted topics may be on a broker that outlives sessions)
    ours = {(leak.where, leak.kind) for leak in everything.leaks if leak.where.startswith(topic)}
    assert ours == {
        (f"{topic}[2]@{in_value.offset} value", Kind.NAME),
        (f"{topic}[0]@{in_key.offset} key", Kind.NAME),
        (f"{dead}[1]@{in_header.offset} header 'dlt.error'", Kind.DATE_OF_BIRTH),
    }
    assert everything.topics[topic] == 3 and everything.topics[dead] == 1
    assert [str(leak) for leak in only_dead.leaks] == [
        f"{dead}[1]@{in_header.offset} header 'dlt.error': {Kind.DATE_OF_BIRTH} 07… (10 characters)"
    ]
    assert dict(only_dead.topics) == {dead: 1}


# The suite-wide scan ---------------------------------------------------------------------------

RUN_COMMAND_SECRETS = ("jwt-secret", "webhook-secret", "sms-auth-token")
"""The secrets the run command generates in its data directory (test_run_command's)."""
RIDE = {"confirmed": True, "driver_name": "Leopold Ashgrove", "driver_phone": "+15035550144"}


def _services_that_logged(root: Path) -> set[str]:
    return {path.name.split("-")[0] for path in process_logs(root) if path.stat().st_size}


NOON_QUIET_HOURS = 'notify:\n  quiet_hours: {start: "12:00", end: "12:01"}\n'
"""Half a day away from the clinic's now (just after midnight): notify sends at once."""


@pytest.fixture
def compact_flow_system(postgres_cluster, kafka_bootstrap, tmp_path_factory) -> Iterator[System]:
    """All four services with every role, on a clinic where it is just after midnight (so an
    infusion can be given, and charged, today)."""
    run = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("e2e-phi-flow-logs")
    system = make_system(
        postgres_cluster, kafka_bootstrap, logs, group=f"e2e-{run}", topic_prefix=f"e2e-{run}."
    )
    policy = _daily_hours_policy(logs / "clinic-policy.yaml")
    with policy.open("a") as appended:
        appended.write(NOON_QUIET_HOURS)
    system.env["CLINIC_POLICY_FILE"] = str(policy)
    try:
        for service in SERVICE_DIRS:
            for role in ("api", "relay", "consumer"):
                system.start(service, role)
        for service in ("waitlist", "billing", "notify"):
            system.start(service, "dispatcher")
        yield system
    finally:
        system.stop_all()


@pytest.fixture
def own_traffic(request: pytest.FixtureRequest, tmp_path_factory) -> System | None:
    """Run with the suite, the scan reads the suite's traffic; run alone (or after tests that
    left some service without a log), it makes traffic of its own through all four services."""
    if _services_that_logged(tmp_path_factory.getbasetemp()) >= set(SERVICE_DIRS):
        return None
    system: System = request.getfixturevalue("compact_flow_system")
    return system


async def _drive_the_compact_flow(system: System, kafka_bootstrap: str) -> None:
    """A registration; a cleared intake with a diagnosis and medications, a course, a ride home
    with its driver, a card saved and charged for the first infusion; another patient's course
    cancelled, its series held and released to the waitlist; the notifications of it all."""
    prefix = system.env["CLINIC_TOPIC_PREFIX"]
    async with httpx.AsyncClient(timeout=30) as client:
        billing, waitlist = BillingFlow(client, system), WaitlistFlow(client, system)
        registered = await register(client, system)
        treated = await cleared_patient(
            client,
            system,
            first_name="Evangelina",
            last_name="Thistlewood",
            date_of_birth="1974-10-09",
            phone="+15035550155",
            diagnosis_codes=["F33.1"],
            medications=[{"name": "Lamotrigine", "class": "lamotrigine"}],
        )
        course = await billing.book_mood_induction(treated["id"])
        SENT.add_fields(RIDE)
        ride = await client.post(
            f"{billing.booking}/v1/appointments/{course[1]['id']}/ride",
            json=RIDE,
            headers=billing.patient(treated["id"]),
        )
        assert ride.status_code == 200, ride.text
        await billing.save_card(treated["id"])
        await billing.infuse(course[0]["id"])
        await billing.charge_in(treated["id"], "paid")

        cancelling = await cleared_patient(
            client, system, first_name="Perpetua", last_name="Wexford", phone="+15035550133"
        )
        other_course = await billing.book_mood_induction(cancelling["id"])
        await waitlist.cancel(cancelling["id"], other_course[0]["id"])

        async def receipt_and_welcome_listed() -> bool:
            kinds = {n["kind"] for n in await notifications(client, system, treated["id"])}
            welcomed = await notifications(client, system, registered["id"])
            return "receipt" in kinds and bool(welcomed)

        await eventually(receipt_and_welcome_listed, 90, "the receipt and the welcome")

    async def every_service_published_and_the_outboxes_are_empty() -> bool:
        for service, database_url in system.database_urls.items():
            unsent = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            if await count_sql(database_url, unsent):
                return False
            if not await read_topic(kafka_bootstrap, prefix + topic_for(service)):
                return False
        return True

    await eventually(every_service_published_and_the_outboxes_are_empty, 90, "every event out")


@pytest.mark.slow
async def test_no_record_on_the_broker_and_no_process_log_of_the_session_carries_phi(
    own_traffic: System | None, kafka_bootstrap: str, tmp_path_factory
):
    if own_traffic is not None:
        await _drive_the_compact_flow(own_traffic, kafka_bootstrap)
        own_traffic.stop_all()  # every log complete before it is read
    session = tmp_path_factory.getbasetemp()
    for secret in (p for name in RUN_COMMAND_SECRETS for p in session.rglob(name)):
        SENT.add(Kind.SECRET, secret.read_text().strip())
    # the run command's processes write to its own output (test_run_command)
    logs = process_logs(session) + sorted(session.rglob("run.log"))

    published = await scan_kafka(kafka_bootstrap)
    logged = scan_logs(logs)

    for service in SERVICE_DIRS:
        read = sum(n for t, n in published.topics.items() if t.endswith(topic_for(service)))
        assert read, f"no record of {service}'s events on the broker: the scan proves nothing"
        lines = sum(n for p, n in logged.files.items() if p.name.startswith(f"{service}-"))
        assert lines, f"no log line of {service}: the scan proves nothing"
    findings = published + logged
    if findings.leaks:
        pytest.fail(findings.report(), pytrace=False)

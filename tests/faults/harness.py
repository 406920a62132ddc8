"""The fault harness's clinic: the four services as real processes on a broker and a cluster the
harness owns, one clock for every process, the faults it injects, the staff and patients who
use it over HTTP, and the probes that read what happened from the databases, the broker, the
SMTP server, the text sinks and the card sandbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import ConsumerRecord

from billing.adapters.sandbox_gateway import SandboxGateway
from billing.entrypoints import consumer as billing_consumer
from booking.entrypoints import consumer as booking_consumer
from clinic_local._util import free_port
from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import PostgresCluster
from clinic_local.processes import ServiceProcess
from clinic_shared.auth import Role
from clinic_shared.clock import CLOCK_OFFSET_FILE_ENV, OffsetFileClock, write_clock_offset
from clinic_shared.contracts.registry import TOPICS, topic_for
from clinic_shared.db import create_engine
from clinic_shared.policy import default_policy
from clinic_shared.testing import SmtpRecorder, read_topic
from notify.adapters.booking_directory import BookingDirectory
from notify.entrypoints import consumer as notify_consumer
from tests.e2e.conftest import SCREENING, SECRET, System, caught_up, make_system, wait_for_file
from waitlist.entrypoints import consumer as waitlist_consumer

ZONE = default_policy().clinic.tz
SERVICES = ("booking", "waitlist", "billing", "notify")
_PRODUCER_OF = {topic: producer for producer, topic in TOPICS.items()}
CONSUMES = {
    service: tuple(_PRODUCER_OF[topic] for topic in module.CONSUMED_TOPICS)
    for service, module in (
        ("booking", booking_consumer),
        ("waitlist", waitlist_consumer),
        ("billing", billing_consumer),
        ("notify", notify_consumer),
    )
}
"""Whose events each service's consumer applies, from its own registry."""
WITH_DISPATCHER = ("waitlist", "billing", "notify")
DISPATCHER_POLL_SECONDS = "0.2"
SEARCH_LIMIT = 50
"""The most course options availability proposes at once."""


class GatedSmtpServer(SmtpRecorder):
    """The real SMTP server, which can hold messages before accepting them: a provider taking
    its time, so that a fault can hit while a send is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self._open = threading.Event()
        self._open.set()
        self.held: list[str] = []
        """Notify message ids of the messages held, in arrival order."""

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self._open.is_set():
            self.held.append(notify_message_id(envelope.original_content or envelope.content))
            await asyncio.to_thread(self._open.wait)
        return await super().handle_DATA(server, session, envelope)


def notify_message_id(raw: bytes) -> str:
    """The notify message an e-mail carries: notify sets `Message-ID: <message id@domain>`."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return str(parsed["Message-ID"]).strip("<>").split("@", 1)[0]


def build_clinic(
    broker: KafkaBroker, postgres: PostgresCluster, smtp: GatedSmtpServer, logs: Path
) -> Clinic:
    run = uuid.uuid4().hex[:8]
    system = make_system(
        postgres,
        broker.bootstrap_servers,
        logs,
        group=f"faults-{run}",
        topic_prefix=f"faults-{run}.",
    )
    clock_file = logs / "clock-offset"
    system.env.update(
        {
            CLOCK_OFFSET_FILE_ENV: str(clock_file),
            "WAITLIST_DISPATCHER_POLL_INTERVAL_SECONDS": DISPATCHER_POLL_SECONDS,
            "NOTIFY_SMTP_HOST": "127.0.0.1",
            "NOTIFY_SMTP_PORT": str(smtp.port),
            "NOTIFY_SMTP_STARTTLS": "false",
            "NOTIFY_MAIL_FROM": "Fault Clinic <appointments@clinic.example>",
        }
    )
    return Clinic(system, broker, postgres, smtp, clock_file)


@dataclass(frozen=True)
class FaultPoint:
    """Where a process armed with it parks (see `clinic_shared.faults`), and the file it writes
    when it gets there."""

    name: str
    marker: Path

    @property
    def env(self) -> dict[str, str]:
        return {"CLINIC_FAULT_POINT": self.name, "CLINIC_FAULT_MARKER": str(self.marker)}

    async def reached(self, timeout: float = 60.0) -> None:
        await wait_for_file(self.marker, timeout)


@dataclass
class Clinic:
    system: System
    broker: KafkaBroker
    postgres: PostgresCluster
    smtp: GatedSmtpServer
    clock_file: Path
    health_ports: dict[ServiceProcess, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._clock = OffsetFileClock(self.clock_file)

    # ---- names
    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def url(self, service: str) -> str:
        return self.system.urls[service]

    def database(self, service: str) -> str:
        return self.system.database_urls[service]

    def topic(self, producer: str) -> str:
        return self.system.env["CLINIC_TOPIC_PREFIX"] + topic_for(producer)

    def group(self, service: str) -> str:
        """The consumer group of a service's consumers, also their name in its inbox."""
        return self.system.env[f"{service.upper()}_CONSUMER_GROUP"]

    @property
    def sandbox(self) -> SandboxGateway:
        return SandboxGateway(self.system.env["BILLING_SANDBOX_STORE"])

    @property
    def text_sinks(self) -> list[Path]:
        outbox = Path(self.system.env["NOTIFY_OUTBOX_DIR"])
        return [outbox / "sms.jsonl", outbox / "push.jsonl"]

    def fault_point(self, name: str) -> FaultPoint:
        return FaultPoint(name, self.system.log_dir / f"fault-{name}-{uuid.uuid4().hex[:6]}")

    # ---- processes
    def start(self, service: str, command: str, **env: str) -> ServiceProcess:
        """One process (an API once it answers); a consumer also serves its liveness on a
        port of its own."""
        process = self._launch(service, command, env)
        if command == "api":
            process.wait_http(self.url(service) + "/healthz")
        return process

    def _launch(self, service: str, command: str, env: Mapping[str, str]) -> ServiceProcess:
        extra = dict(env)
        port = free_port() if command == "consumer" else None
        if port is not None:
            extra[f"{service.upper()}_CONSUMER_HEALTH_PORT"] = str(port)
        process = ServiceProcess(
            service, command, {**self.system.env, **extra}, self.system.log_dir
        )
        self.system.processes.append(process.start())
        if port is not None:
            self.health_ports[process] = port
        return process

    def start_everything(
        self, faulted: Mapping[tuple[str, str], Mapping[str, str]]
    ) -> dict[tuple[str, str], ServiceProcess]:
        """Every process of every service at once, then waits for the APIs to answer;
        `faulted` adds environment to some roles."""
        roles = [
            (service, command)
            for service in SERVICES
            for command in ("api", "consumer", "relay", "dispatcher")
            if command != "dispatcher" or service in WITH_DISPATCHER
        ]
        started = {role: self._launch(*role, faulted.get(role, {})) for role in roles}
        for service in SERVICES:
            started[(service, "api")].wait_http(self.url(service) + "/healthz")
        return started

    def running(self, service: str, command: str) -> list[ServiceProcess]:
        return [
            p
            for p in self.system.processes
            if (p.service, p.command) == (service, command) and p.alive
        ]

    async def liveness(self, consumer: ServiceProcess) -> tuple[int, dict[str, Any]] | None:
        """A consumer's `/livez` answer, None while it does not serve one yet."""
        port = self.health_ports[consumer]
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.get(f"http://127.0.0.1:{port}/livez")
        except httpx.TransportError:
            return None
        return answer.status_code, dict(answer.json())

    # ---- time
    def now(self) -> datetime:
        """The instant every process of the clinic reads from its clock."""
        return self._clock.now()

    def travel_to(self, instant: datetime) -> None:
        """Move every process's clock to `instant` (never back)."""
        offset = instant - datetime.now(UTC)
        if offset < self._clock.offset():
            raise ValueError(f"the clinic's time only moves forward, not back to {instant}")
        write_clock_offset(self.clock_file, offset)

    # ---- what the databases and the broker say
    async def rows(self, service: str, sql: str, **params: object) -> list[sa.Row[Any]]:
        engine = create_engine(self.database(service))
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(sa.text(sql), params)).all())
        finally:
            await engine.dispose()

    async def scalar(self, service: str, sql: str, **params: object) -> Any:
        [(value,)] = await self.rows(service, sql, **params)
        return value

    async def records(self, producer: str) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_topic(self.bootstrap, self.topic(producer))

    async def dead_letters(self, producer: str) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_topic(self.bootstrap, self.topic(producer) + ".DLT")

    async def unsent_outbox_rows(self) -> dict[str, int]:
        counts = {}
        for service in SERVICES:
            counts[service] = await self.scalar(
                service, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            )
        return counts

    async def lagging_groups(self) -> list[str]:
        """`group <- topic` for every consumer group not committed up to its topic's end."""
        lagging = []
        for service, producers in CONSUMES.items():
            for producer in producers:
                if not await caught_up(self.bootstrap, self.group(service), self.topic(producer)):
                    lagging.append(f"{self.group(service)} <- {self.topic(producer)}")
        return lagging

    async def settled(self) -> bool:
        """Every outbox row published and every consumer group at its topics' ends."""
        unsent = await self.unsent_outbox_rows()
        return not any(unsent.values()) and not await self.lagging_groups()

    async def due_work_waiting(self) -> dict[str, int]:
        """Rows of the due-queues whose moment has come and that nobody has finished."""
        now = self.now()
        queries = {
            "billing": "SELECT count(*) FROM charge WHERE status IN ('pending', 'retrying') "
            "AND due_at <= :now",
            "waitlist": "SELECT count(*) FROM offer WHERE status = 'open' AND expires_at <= :now",
            "notify": "SELECT count(*) FROM message WHERE status IN ('scheduled', 'claimed', "
            "'sending') AND due_at <= :now",
        }
        waiting = {s: await self.scalar(s, sql, now=now) for s, sql in queries.items()}
        return {service: count for service, count in waiting.items() if count}

    async def handled_types(self) -> dict[str, set[str]]:
        """The event types each service's consumer applies, from its handler registry."""
        directory = BookingDirectory(self.url("booking"), SECRET)
        try:
            notify = set(notify_consumer.event_handlers(directory))
        finally:
            await directory.close()
        return {
            "booking": set(booking_consumer.EVENT_HANDLERS),
            "waitlist": set(waitlist_consumer.EVENT_HANDLERS),
            "billing": set(billing_consumer.EVENT_HANDLERS),
            "notify": notify,
        }

    def provider_receipts(self) -> Counter[str]:
        """How often the providers received each notify message id: the SMTP server by the
        Message-ID notify sets (`<message id@domain>`), the text sinks by their reference."""
        received: Counter[str] = Counter()
        received.update(notify_message_id(raw) for raw in list(self.smtp.messages))
        for sink in self.text_sinks:
            if sink.exists():
                for line in sink.read_text().splitlines():
                    if line:
                        received[json.loads(line)["reference"]] += 1
        return received


def readers_of(producer: str) -> list[str]:
    """The services whose consumers apply `producer`'s events."""
    return [service for service, producers in CONSUMES.items() if producer in producers]


def patient_body(number: int) -> dict[str, str]:
    """A made-up patient: the details stay in booking (events carry only ids)."""
    return {
        "first_name": f"Walkin{number}",
        "last_name": "Faultline",
        "date_of_birth": f"19{60 + number % 30}-0{1 + number % 9}-1{number % 10}",
        "email": f"walkin{number}.{uuid.uuid4().hex[:6]}@example.org",
        "phone": f"+1503555{1000 + number:04d}",
    }


class Desk:
    """Staff and patients at the clinic's HTTP APIs."""

    def __init__(self, client: httpx.AsyncClient, clinic: Clinic) -> None:
        self.client, self.clinic = client, clinic
        system = clinic.system
        # fixed subjects: an Idempotency-Key is scoped to the caller, so a retry is the same one
        self.scheduler = system.headers(Role.SCHEDULER, "scheduler-front-desk")
        self.clinician = system.headers(Role.CLINICIAN, "dr-faults")
        self.billing_staff = system.headers(Role.BILLING, "billing-desk")

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.clinic.system.headers(Role.PATIENT, patient_id)

    def _url(self, service: str, path: str) -> str:
        return self.clinic.url(service) + path

    @staticmethod
    def _expect(response: httpx.Response, *statuses: int) -> Any:
        """The JSON body of an answer with one of `statuses`."""
        assert response.status_code in statuses, (
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    async def register(self, body: dict[str, str], key: str) -> httpx.Response:
        return await self.client.post(
            self._url("booking", "/v1/patients"),
            json=body,
            headers={**self.scheduler, "Idempotency-Key": key},
        )

    async def clear_intake(
        self, patient_id: str, condition: str, medications: list[dict[str, str]]
    ) -> None:
        answered = await self.client.put(
            self._url("booking", f"/v1/patients/{patient_id}/intake"),
            json={
                "condition": condition,
                "screening": SCREENING,
                "medications": medications,
                "diagnosis_codes": ["F33.1" if condition == "mood" else "G90.50"],
            },
            headers=self.patient(patient_id),
        )
        self._expect(answered, 200)
        cleared = await self.client.post(
            self._url("booking", f"/v1/patients/{patient_id}/intake/clearance"),
            json={"diagnosis_confirmed": True},
            headers=self.clinician,
        )
        self._expect(cleared, 200)

    async def save_card(self, patient_id: str) -> None:
        saved = await self.client.post(
            self._url("billing", f"/v1/patients/{patient_id}/payment-methods"),
            json={"processor_token": "pm_card_visa"},
            headers=self.patient(patient_id),
        )
        self._expect(saved, 201)

    async def book_course(
        self,
        patient_id: str,
        protocol: str,
        *,
        earliest: datetime | None = None,
        first_day: date | None = None,
    ) -> dict[str, Any]:
        """The first course availability proposes (from `earliest`; starting on `first_day`
        when given), booked whole: booking's answer, its appointments in order."""
        params: dict[str, str | int] = {
            "protocol": protocol,
            "patient_id": patient_id,
            "limit": SEARCH_LIMIT,
        }
        if earliest is not None:
            params["from"] = earliest.isoformat()
        found = await self.client.get(
            self._url("booking", "/v1/availability"), params=params, headers=self.scheduler
        )
        options = self._expect(found, 200)["options"]
        fitting = [
            o
            for o in options
            if first_day is None
            or datetime.fromisoformat(o["slots"][0]["start"]).astimezone(ZONE).date() == first_day
        ]
        assert fitting, f"no {protocol} course starting on {first_day}: {options}"
        booked = await self.client.post(
            self._url("booking", "/v1/courses"),
            json={
                "patient_id": patient_id,
                "protocol": protocol,
                "slots": [
                    {"start": s["start"], "chair_id": s["chair_id"]} for s in fitting[0]["slots"]
                ],
            },
            headers={**self.scheduler, "Idempotency-Key": f"course-{patient_id}"},
        )
        course = dict(self._expect(booked, 201))
        course["appointments"] = sorted(course["appointments"], key=lambda a: a["start"])
        return course

    async def cancel(self, patient_id: str, appointment_id: str, *, late: bool) -> dict[str, Any]:
        answer = await self.client.post(
            self._url("booking", f"/v1/appointments/{appointment_id}/cancel"),
            json={"reason": "schedule clash", "acknowledge_late_fee": late},
            headers=self.patient(patient_id),
        )
        return dict(self._expect(answer, 200))

    async def join_waitlist_for(self, patient_id: str, slots: list[dict[str, Any]]) -> str:
        """A mood-induction entry whose weekdays and window fit exactly these slots."""
        local = [
            (
                datetime.fromisoformat(s["start"]).astimezone(ZONE),
                datetime.fromisoformat(s["end"]).astimezone(ZONE),
            )
            for s in slots
        ]
        joined = await self.client.post(
            self._url("waitlist", "/v1/entries"),
            json={
                "patient_id": patient_id,
                "protocol": "mood_induction",
                "earliest_start": self.clinic.now().astimezone(ZONE).date().isoformat(),
                "preferences": {
                    "weekdays": sorted({start.strftime("%a").lower() for start, _ in local}),
                    "windows": [
                        {
                            "start_time": min(s.time() for s, _ in local).isoformat("minutes"),
                            "end_time": max(e.time() for _, e in local).isoformat("minutes"),
                        }
                    ],
                },
            },
            headers=self.scheduler,
        )
        return str(self._expect(joined, 201)["id"])

    async def offers(self, patient_id: str) -> list[dict[str, Any]]:
        found = await self.client.get(
            self._url("waitlist", "/v1/offers"), headers=self.patient(patient_id)
        )
        return list(self._expect(found, 200)["offers"])

    async def answer_offer(self, patient_id: str, offer_id: str, answer: str) -> None:
        answered = await self.client.post(
            self._url("waitlist", f"/v1/offers/{offer_id}/{answer}"),
            headers=self.patient(patient_id),
        )
        self._expect(answered, 200, 202)

    async def check_in(self, appointment_id: str) -> httpx.Response:
        return await self.client.post(
            self._url("booking", f"/v1/appointments/{appointment_id}/check-in"),
            headers=self.clinician,
        )

    async def complete(self, appointment_id: str) -> httpx.Response:
        return await self.client.post(
            self._url("booking", f"/v1/appointments/{appointment_id}/complete"),
            json={},
            headers=self.clinician,
        )

    async def infuse(self, appointment_id: str) -> None:
        self._expect(await self.check_in(appointment_id), 200)
        self._expect(await self.complete(appointment_id), 200)

    async def no_show(self, appointment_id: str) -> dict[str, Any]:
        marked = await self.client.post(
            self._url("booking", f"/v1/appointments/{appointment_id}/no-show"),
            json={},
            headers=self.scheduler,
        )
        return dict(self._expect(marked, 200))

    async def finance(self, patient_id: str, course_id: str) -> httpx.Response:
        return await self.client.post(
            self._url("billing", "/v1/financing-plans"),
            json={"patient_id": patient_id, "course_id": course_id, "installments": 3},
            headers={**self.billing_staff, "Idempotency-Key": f"plan-{course_id}"},
        )

    async def plan(self, plan_id: str) -> dict[str, Any]:
        found = await self.client.get(
            self._url("billing", f"/v1/financing-plans/{plan_id}"), headers=self.billing_staff
        )
        return dict(self._expect(found, 200))

    async def ledger(self, patient_id: str) -> dict[str, Any]:
        found = await self.client.get(
            self._url("billing", f"/v1/patients/{patient_id}/ledger"), headers=self.billing_staff
        )
        return dict(self._expect(found, 200))

"""The four services' real apps in process, each on its own PostgreSQL database, signed in with
real tokens. Booking's internal API is played by fakes that know the seeded patients (as in
each service's own tests); the card processor is the sandbox; the clock is fixed.

`world` seeds patient A with a record of every kind each service keeps (and patient B with a
profile of their own), so that the tests can call every operation with A's ids."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.adapters.sandbox_gateway import SandboxGateway
from billing.adapters.webhook_signature import sign
from billing.config import BillingSettings
from billing.domain.ports import PatientRecord
from billing.entrypoints.api import create_app as billing_app
from billing.entrypoints.cli import SERVICE_DIR as BILLING_DIR
from billing.entrypoints.consumer import EVENT_HANDLERS as BILLING_HANDLERS
from billing.service_layer.charges import CardCharges
from booking.config import BookingSettings
from booking.entrypoints.api import create_app as booking_app
from booking.entrypoints.cli import SERVICE_DIR as BOOKING_DIR
from clinic_shared import migrations
from clinic_shared.auth import Role
from clinic_shared.clock import FakeClock
from clinic_shared.consumer import Handler
from clinic_shared.contracts import booking
from clinic_shared.duequeue import drain
from clinic_shared.envelope import Envelope, IntegrationEvent
from clinic_shared.settings import CommonSettings
from clinic_shared.testing import apply_once, bearer
from notify.adapters.texts import sign_twilio_request
from notify.config import NotifySettings
from notify.domain.ports import Contact
from notify.entrypoints.api import create_app as notify_app
from notify.entrypoints.cli import SERVICE_DIR as NOTIFY_DIR
from notify.entrypoints.consumer import event_handlers as notify_handlers
from waitlist.config import WaitlistSettings
from waitlist.domain.ports import PatientFacts
from waitlist.entrypoints.api import create_app as waitlist_app
from waitlist.entrypoints.cli import SERVICE_DIR as WAITLIST_DIR
from waitlist.entrypoints.consumer import EVENT_HANDLERS as WAITLIST_HANDLERS

SECRET = "api-tests-secret-0123456789-0123456789-0123456789"
NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)  # Friday 09:05 in Portland
SERVICES = ("booking", "waitlist", "billing", "notify")
SERVICE_DIRS = {
    "booking": BOOKING_DIR,
    "waitlist": WAITLIST_DIR,
    "billing": BILLING_DIR,
    "notify": NOTIFY_DIR,
}
SCREENING_CLEAR = {
    "psychosis": False,
    "seizure_disorder": False,
    "aminophylline_use": False,
    "uncontrolled_hypertension": False,
    "unstable_cardiopulmonary_disease": False,
}
# Mon, Wed, Fri, Mon, Wed, Fri at 09:00 Portland time: a mood induction course.
MOOD_COURSE = [
    "2026-11-23T09:00:00-08:00",
    "2026-11-25T09:00:00-08:00",
    "2026-11-27T09:00:00-08:00",
    "2026-11-30T09:00:00-08:00",
    "2026-12-02T09:00:00-08:00",
    "2026-12-04T09:00:00-08:00",
]
SETTLEMENT_HEADER = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
    "source_id,payment_intent_id\n"
)
WEBHOOK_SECRET = "whsec_api_tests_0123456789abcdef"
SMS_TOKEN = "api-tests-sms-auth-token"
INBOUND_SMS_URL = "https://notify.clinic.test/v1/inbound/sms"


@dataclass(frozen=True)
class Person:
    """A patient's profile: what must never reach another patient."""

    id: str
    first_name: str
    last_name: str
    date_of_birth: str
    email: str
    phone: str

    def registration(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "id"}


def new_person(first_name: str, last_name: str, born: str, phone: str) -> Person:
    return Person(
        id=str(uuid.uuid4()),
        first_name=first_name,
        last_name=last_name,
        date_of_birth=born,
        email=f"{first_name.lower()}.{uuid.uuid4().hex[:6]}@example.org",
        phone=phone,
    )


class People:
    """Booking's internal patient lookup, as the waitlist, billing and notify see it."""

    def __init__(self) -> None:
        self.known: dict[UUID, Person] = {}

    def add(self, person: Person) -> None:
        self.known[UUID(person.id)] = person

    def for_waitlist(self) -> WaitlistDirectory:
        return WaitlistDirectory(self)

    def for_billing(self) -> BillingDirectory:
        return BillingDirectory(self)

    def for_notify(self) -> NotifyDirectory:
        return NotifyDirectory(self)


@dataclass
class WaitlistDirectory:
    people: People

    async def lookup(self, patient_id: UUID) -> PatientFacts | None:
        if patient_id not in self.people.known:
            return None
        return PatientFacts(patient_id, "mood")


@dataclass
class BillingDirectory:
    people: People

    async def lookup(self, patient_id: UUID) -> PatientRecord | None:
        person = self.people.known.get(patient_id)
        if person is None:
            return None
        born = date.fromisoformat(person.date_of_birth)
        return PatientRecord(patient_id, person.first_name, person.last_name, born, ["F33.2"])

    async def close(self) -> None:
        return None


@dataclass
class NotifyDirectory:
    people: People

    async def contact(self, patient_id: UUID) -> Contact | None:
        person = self.people.known.get(patient_id)
        if person is None:
            return None
        return Contact(first_name=person.first_name, email=person.email, phone=person.phone)

    async def confirm_ride(self, appointment_id: UUID, patient_id: UUID) -> bool:
        return patient_id in self.people.known

    async def close(self) -> None:
        return None


def token(role: Role, patient_id: str | None = None) -> dict[str, str]:
    return bearer(SECRET, role, patient_id if role is Role.PATIENT else f"{role.value}-1")


@dataclass
class Apps:
    """The four services' apps on one set of databases, and what they share."""

    by_service: dict[str, FastAPI]
    clock: FakeClock
    gateway: SandboxGateway

    def signed_by_providers(self) -> dict[str, ASGIApp]:
        """The apps, where the card processor signs what reaches billing's webhook and the SMS
        provider what reaches notify's (as they do), so that any body gets past the signature."""
        stamp = int(self.clock.now().timestamp())
        return self.by_service | {
            "billing": Signing(
                self.by_service["billing"],
                "/v1/webhooks/processor",
                "stripe-signature",
                lambda body: sign(body, WEBHOOK_SECRET, stamp),
            ),
            "notify": Signing(
                self.by_service["notify"],
                "/v1/inbound/sms",
                "x-twilio-signature",
                lambda body: sign_twilio_request(INBOUND_SMS_URL, _form(body), SMS_TOKEN),
            ),
        }


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return {}  # what no provider sends: the signature will not match


@dataclass
class Signing:
    """An ASGI app whose requests to `path` get a `header` signing their body."""

    app: ASGIApp
    path: str
    header: str
    signature: Callable[[bytes], str]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() != self.header]
        headers.append((self.header.encode(), self.signature(body).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


def build_apps(
    database_urls: dict[str, str], kafka_bootstrap: str, scratch: Path, people: People
) -> Apps:
    common = CommonSettings(jwt_secret=SECRET, kafka_bootstrap_servers=kafka_bootstrap)  # type: ignore[arg-type]
    clock = FakeClock(NOW)
    gateway = SandboxGateway(scratch / "card-sandbox.db")
    apps = {
        "booking": booking_app(
            BookingSettings(database_url=database_urls["booking"], common=common), clock=clock
        ),
        "waitlist": waitlist_app(
            WaitlistSettings(database_url=database_urls["waitlist"], common=common),
            clock=clock,
            directory=people.for_waitlist(),
        ),
        "billing": billing_app(
            BillingSettings(
                database_url=database_urls["billing"],
                common=common,
                webhook_secret=WEBHOOK_SECRET,  # type: ignore[arg-type]
            ),
            clock=clock,
            gateway=gateway,
            directory=people.for_billing(),
        ),
        "notify": notify_app(
            NotifySettings(
                database_url=database_urls["notify"],
                common=common,
                sms_auth_token=SMS_TOKEN,  # type: ignore[arg-type]
                inbound_sms_url=INBOUND_SMS_URL,
                outbox_dir=str(scratch / "notify-outbox"),
            ),
            clock=clock,
        ),
    }
    return Apps(apps, clock, gateway)


@pytest.fixture(scope="module")
def database_urls(postgres_cluster: Any) -> Iterator[dict[str, str]]:
    """One migrated PostgreSQL database per service, for one test module."""
    names = {service: f"api_{service}_{uuid.uuid4().hex[:10]}" for service in SERVICES}
    urls = {}
    try:
        for service, name in names.items():
            urls[service] = postgres_cluster.create_database(name)
            migrations.upgrade(SERVICE_DIRS[service], urls[service])
        yield urls
    finally:
        for service in urls:
            postgres_cluster.drop_database(names[service])


@pytest.fixture(scope="module")
def people() -> People:
    return People()


@dataclass
class Clinic:
    """The apps under test, each with an HTTP client, and the helpers the tests share."""

    apps: Apps
    clients: dict[str, httpx.AsyncClient]
    people: People

    async def deliver(
        self, service: str, handlers: dict[str, Handler], event: IntegrationEvent
    ) -> None:
        """Another service's event through the inbox, as the service's consumer applies it."""
        factory = self.apps.by_service[service].state.infra.uow_factory
        envelope = Envelope.wrap(event, occurred_at=self.apps.clock.now())
        assert await apply_once(factory, envelope, handlers, service)

    async def call(
        self, service: str, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        return await self.clients[service].request(method, path, headers=headers, **kwargs)

    async def ok(
        self, service: str, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> Any:
        response = await self.call(service, method, path, headers, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def operations(self) -> list[Operation]:
        """Every operation of the four services' OpenAPI documents."""
        return [
            operation
            for service, app in self.apps.by_service.items()
            for operation in operations(service, app.openapi())
        ]

    async def send(
        self, world: World, operation: Operation, headers: dict[str, str], **changes: Any
    ) -> httpx.Response:
        """The operation's request (naming A's records), with `headers` and any `changes`."""
        request = operation.request(world) | changes
        request["headers"] = request.get("headers", {}) | headers
        return await self.clients[operation.service].request(**request)

    async def records_of_a(self, world: World) -> dict[str, bytes]:
        """Everything patient A can read about themself, as A reads it."""
        seen = {}
        for operation in self.operations():
            if operation.method == "GET" and operation.roles and Role.PATIENT in operation.roles:
                response = await self.send(
                    world, operation, world.signed_in(Role.PATIENT, world.a.id)
                )
                assert response.status_code == 200, (operation.label, response.text)
                seen[operation.label] = response.content
        return seen


@pytest.fixture(scope="module")
def new_apps(
    database_urls: dict[str, str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    people: People,
) -> Callable[[], Apps]:
    """Builds another set of apps on this module's databases (and card sandbox)."""
    scratch = tmp_path_factory.mktemp("api")
    return lambda: build_apps(database_urls, kafka_bootstrap, scratch, people)


@pytest.fixture(scope="module")
async def clinic(new_apps: Callable[[], Apps], people: People) -> AsyncIterator[Clinic]:
    apps = new_apps()
    clients = {}
    managers = [LifespanManager(app) for app in apps.by_service.values()]
    for manager in managers:
        await manager.__aenter__()
    try:
        for service, app in apps.by_service.items():
            clients[service] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            )
        yield Clinic(apps, clients, people)
    finally:
        for client in clients.values():
            await client.aclose()
        for manager in reversed(managers):
            await manager.__aexit__(None, None, None)


@dataclass(frozen=True)
class World:
    """Patient A with a record of every kind, patient B with their own profile only. `ids`
    names A's records by the parameter names the APIs use (`appointment_id`, ...)."""

    a: Person
    b: Person
    ids: dict[str, str]

    @staticmethod
    def signed_in(role: Role, patient_id: str | None = None) -> dict[str, str]:
        """A patient's token names the patient; a staff token someone of that role."""
        return token(role, patient_id)

    def secrets_of_a(self) -> list[str]:
        """What of A an answer to B must never contain: every id of A's records but the one in
        the request's own path, and A's profile."""
        return [
            *self.ids.values(),
            self.a.first_name,
            self.a.last_name,
            self.a.email,
            self.a.phone,
            self.a.date_of_birth,
        ]


async def seed_booking(clinic: Clinic, a: Person, b: Person) -> dict[str, str]:
    """A registered, screened, cleared and booked on a mood induction course; a third patient's
    cancelled first infusion holds the rest of their series for the waitlist (the hold)."""
    c = new_person("Carmen", "Holdover", "1991-07-30", "+15035550177")
    for person in (a, b, c):
        await clinic.ok(
            "booking",
            "POST",
            "/v1/patients",
            token(Role.PATIENT, person.id),
            json=person.registration(),
        )
    courses = {}
    for person, chair in ((a, "chair-1"), (c, "chair-2")):
        await clinic.ok(
            "booking",
            "PUT",
            f"/v1/patients/{person.id}/intake",
            token(Role.PATIENT, person.id),
            json={
                "condition": "mood",
                "screening": SCREENING_CLEAR,
                "medications": [{"name": "sertraline", "class": "other"}],
                "diagnosis_codes": ["F33.2"],
            },
        )
        await clinic.ok(
            "booking",
            "POST",
            f"/v1/patients/{person.id}/intake/clearance",
            token(Role.CLINICIAN),
            json={"diagnosis_confirmed": True},
        )
        courses[person.id] = await clinic.ok(
            "booking",
            "POST",
            "/v1/courses",
            token(Role.PATIENT, person.id),
            json={
                "patient_id": person.id,
                "protocol": "mood_induction",
                "slots": [{"start": start, "chair_id": chair} for start in MOOD_COURSE],
            },
        )
    first_of_c = courses[c.id]["appointments"][0]["id"]
    cancelled = await clinic.ok(
        "booking",
        "POST",
        f"/v1/appointments/{first_of_c}/cancel",
        token(Role.PATIENT, c.id),
        json={"reason": "moving away"},
    )
    return {
        "course_id": courses[a.id]["id"],
        "appointment_id": courses[a.id]["appointments"][1]["id"],
        "hold_id": cancelled["hold_id"],
    }


async def seed_waitlist(clinic: Clinic, a: Person) -> dict[str, str]:
    """A waits for a mood induction course and holds the offer of a released series."""
    entry = await clinic.ok(
        "waitlist",
        "POST",
        "/v1/entries",
        token(Role.PATIENT, a.id),
        json={"patient_id": a.id, "protocol": "mood_induction", "earliest_start": "2026-11-21"},
    )
    slots = []
    for start in MOOD_COURSE[1:]:
        begin = datetime.fromisoformat(start).astimezone(UTC)
        slots.append(
            booking.SlotFact(
                appointment_id=uuid.uuid4(),
                resource_id="chair-3",
                start=begin,
                end=begin + timedelta(minutes=90),
            )
        )
    await clinic.deliver(
        "waitlist",
        WAITLIST_HANDLERS,
        booking.BlockReleased(
            hold_id=uuid.uuid4(),
            source_course_id=uuid.uuid4(),
            protocol="mood_induction",
            family="mood",
            kind="series",
            slots=slots,
            released_at=clinic.apps.clock.now(),
        ),
    )
    offers = await clinic.ok("waitlist", "GET", "/v1/offers", token(Role.PATIENT, a.id))
    (offer,) = offers["offers"]
    return {"entry_id": entry["id"], "offer_id": offer["id"], "block_id": offer["block_id"]}


async def seed_billing(clinic: Clinic, a: Person, course_id: str) -> dict[str, str]:
    """A's card, a paid infusion (partly refunded), A's booked course on a financing plan, and a
    settlement report that names A's payment."""
    await clinic.ok(
        "billing",
        "POST",
        f"/v1/patients/{a.id}/payment-methods",
        token(Role.PATIENT, a.id),
        json={"processor_token": "pm_card_visa"},
    )
    done = clinic.apps.clock.now()
    await clinic.deliver(
        "billing",
        BILLING_HANDLERS,
        booking.InfusionCompleted(
            appointment_id=uuid.uuid4(),
            course_id=uuid.uuid4(),
            patient_id=UUID(a.id),
            protocol="mood_induction",
            family="mood",
            ordinal=1,
            start=done - timedelta(minutes=65),
            completed_at=done,
            infusion_minutes=60,
        ),
    )
    factory = clinic.apps.by_service["billing"].state.infra.uow_factory
    await drain([CardCharges(clinic.apps.gateway)], factory)
    (charge,) = await clinic.ok(
        "billing", "GET", f"/v1/patients/{a.id}/charges", token(Role.BILLING)
    )
    await clinic.deliver(
        "billing",
        BILLING_HANDLERS,
        booking.CourseBooked(
            course_id=UUID(course_id),
            patient_id=UUID(a.id),
            protocol="mood_induction",
            family="mood",
            slots=[
                booking.SlotFact(
                    appointment_id=uuid.uuid4(),
                    resource_id="chair-1",
                    start=NOW + timedelta(days=3 + 2 * n),
                    end=NOW + timedelta(days=3 + 2 * n, minutes=90),
                )
                for n in range(6)
            ],
            booked_at=clinic.apps.clock.now(),
            booked_by="patient",
        ),
    )
    plan = await clinic.ok(
        "billing",
        "POST",
        "/v1/financing-plans",
        token(Role.PATIENT, a.id),
        json={"patient_id": a.id, "course_id": course_id, "installments": 3},
    )
    refund = await clinic.ok(
        "billing",
        "POST",
        "/v1/refunds",
        token(Role.BILLING),
        json={"charge_id": charge["id"], "amount_cents": 1000, "reason": "goodwill"},
    )
    line = f"txn_1,2026-11-20 17:10:00,usd,600.00,17.70,582.30,charge,ch_1,{charge['payment_id']}"
    report = await clinic.ok(
        "billing",
        "POST",
        "/v1/reconciliation/settlements",
        {**token(Role.BILLING), "Content-Type": "text/csv"},
        content=SETTLEMENT_HEADER + line + "\n",
    )
    return {
        "charge_id": charge["id"],
        "plan_id": plan["id"],
        "refund_id": refund["id"],
        "report_id": report["id"],
    }


async def seed_notify(clinic: Clinic, a: Person) -> None:
    """A's course confirmation and reminders, and A's own choice of channels."""
    course_id = uuid.uuid4()
    begin = datetime.fromisoformat(MOOD_COURSE[1]).astimezone(UTC)
    slot = booking.SlotFact(
        appointment_id=uuid.uuid4(),
        resource_id="chair-1",
        start=begin,
        end=begin + timedelta(minutes=90),
    )
    handlers = notify_handlers(clinic.people.for_notify())
    for event in (
        booking.CourseBooked(
            course_id=course_id,
            patient_id=UUID(a.id),
            protocol="mood_induction",
            family="mood",
            slots=[slot],
            booked_at=clinic.apps.clock.now(),
            booked_by="patient",
        ),
        booking.AppointmentBooked(
            appointment_id=slot.appointment_id,
            course_id=course_id,
            patient_id=UUID(a.id),
            protocol="mood_induction",
            family="mood",
            sequence=1,
            resource_id=slot.resource_id,
            start=slot.start,
            end=slot.end,
            first_visit=True,
        ),
    ):
        await clinic.deliver("notify", handlers, event)
    await clinic.ok(
        "notify",
        "PUT",
        f"/v1/patients/{a.id}/preferences",
        token(Role.PATIENT, a.id),
        json={"channels": ["email", "sms"], "quiet_hours": {"start": "21:30", "end": "07:30"}},
    )


@pytest.fixture(scope="module")
async def world(clinic: Clinic, people: People) -> World:
    a = new_person("Amara", "Okonkwo-Lindqvist", "1979-03-14", "+15035550142")
    b = new_person("Bertil", "Nakashima", "1984-11-02", "+15035550143")
    people.add(a)
    people.add(b)
    ids = {"patient_id": a.id}
    ids |= await seed_booking(clinic, a, b)
    ids |= await seed_waitlist(clinic, a)
    ids |= await seed_billing(clinic, a, ids["course_id"])
    await seed_notify(clinic, a)
    return World(a, b, ids)


# The operations the four OpenAPI documents name, and a request for each ----------------------

PRICE_BOOK = {
    "infusions": {
        "mood": [{"from_ordinal": 1, "cents": 60000}, {"from_ordinal": 6, "cents": 45000}],
        "pain": [{"from_ordinal": 1, "cents": 120000}, {"from_ordinal": 6, "cents": 95000}],
    },
    "consults": {"phone_consult": 0, "info_consult": 20000},
    "fees": {"late_cancellation": 10000, "no_show": 15000},
}
SETTLEMENT = SETTLEMENT_HEADER + "txn_9,2026-11-20 17:10:00,usd,600.00,17.70,582.30,charge,,pi_9\n"

# A request body each operation accepts, naming patient A's records (`w` is the world). Only
# the bodies: which operations exist, and who may call them, comes from the documents.
Body = Callable[[Any], dict[str, Any]]
BODIES: dict[tuple[str, str, str], Body] = {
    ("booking", "POST", "/v1/patients"): lambda w: {
        "json": {
            "first_name": "Noor",
            "last_name": "Registered-Twice",
            "date_of_birth": "1990-06-01",
            "email": "noor@example.org",
            "phone": "+15035550190",
        }
    },
    ("booking", "PUT", "/v1/patients/{patient_id}/intake"): lambda w: {
        "json": {"condition": "mood", "screening": SCREENING_CLEAR}
    },
    ("booking", "POST", "/v1/patients/{patient_id}/intake/clearance"): lambda w: {
        "json": {"diagnosis_confirmed": True}
    },
    ("booking", "POST", "/v1/courses"): lambda w: {
        "json": {
            "patient_id": w.a.id,
            "protocol": "maintenance",
            "slots": [{"start": "2026-12-08T13:00:00-08:00", "chair_id": "chair-4"}],
        }
    },
    ("booking", "POST", "/v1/appointments/{appointment_id}/cancel"): lambda w: {
        "json": {"reason": "a family emergency"}
    },
    ("booking", "POST", "/v1/appointments/{appointment_id}/reschedule"): lambda w: {
        "json": {"start": "2026-12-09T13:00:00-08:00", "chair_id": "chair-4"}
    },
    ("booking", "POST", "/v1/appointments/{appointment_id}/waive-fee"): lambda w: {
        "json": {"reason": "the clinic closed early"}
    },
    ("booking", "POST", "/v1/appointments/{appointment_id}/ride"): lambda w: {
        "json": {"confirmed": True}
    },
    ("booking", "POST", "/internal/v1/appointments/{appointment_id}/ride"): lambda w: {
        "json": {"patient_id": w.a.id}
    },
    ("waitlist", "POST", "/v1/entries"): lambda w: {
        "json": {"patient_id": w.a.id, "protocol": "maintenance", "earliest_start": "2026-12-01"}
    },
    ("waitlist", "PATCH", "/v1/entries/{entry_id}"): lambda w: {"json": {"paused": True}},
    ("waitlist", "POST", "/v1/offers"): lambda w: {
        "json": {"block_id": w.ids["block_id"], "entry_id": w.ids["entry_id"]}
    },
    ("billing", "PUT", "/v1/price-book"): lambda w: {"json": PRICE_BOOK},
    ("billing", "POST", "/v1/patients/{patient_id}/payment-methods"): lambda w: {
        "json": {"processor_token": "pm_card_mastercard"}
    },
    ("billing", "POST", "/v1/financing-plans"): lambda w: {
        "json": {"patient_id": w.a.id, "course_id": w.ids["course_id"], "installments": 6}
    },
    ("billing", "POST", "/v1/refunds"): lambda w: {
        "json": {"charge_id": w.ids["charge_id"], "amount_cents": 500, "reason": "goodwill"}
    },
    ("billing", "POST", "/v1/reconciliation/settlements"): lambda w: {
        "content": SETTLEMENT,
        "headers": {"Content-Type": "text/csv"},
    },
    ("notify", "PUT", "/v1/patients/{patient_id}/preferences"): lambda w: {
        "json": {"channels": ["email"]}
    },
}
# Values for required query parameters that name no record.
QUERY_VALUES = {"protocol": "mood_induction", "from": "2026-11-01", "to": "2026-11-30"}


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    roles: frozenset[Role] | None
    """Who the document admits; None: no bearer token at all (health checks, webhooks)."""
    query: tuple[tuple[str, bool], ...]
    body: str | None
    """None, "optional" or "required"."""
    body_fields: frozenset[str]
    """The top-level fields of a JSON body."""

    @property
    def label(self) -> str:
        return f"{self.service} {self.method} {self.path}"

    def names_a_record(self, world: World) -> bool:
        """Whether the request names one of patient A's records (in its path, query or body)."""
        return (
            "{" in self.path
            or any(name in world.ids for name, _ in self.query)
            or (self.body is not None and world.a.id in str(self.request(world)))
        )

    def request(self, world: World) -> dict[str, Any]:
        """The operation's request, naming patient A's records."""
        unseeded = set(re.findall(r"\{(\w+)\}", self.path)) - world.ids.keys()
        if unseeded:
            pytest.fail(f"{self.label}: `world` seeds no record for {sorted(unseeded)}")
        url = re.sub(r"\{(\w+)\}", lambda m: world.ids[m.group(1)], self.path)
        params = {}
        for name, required in self.query:
            if name in world.ids:
                params[name] = world.ids[name]
            elif required:
                params[name] = QUERY_VALUES[name]
        request: dict[str, Any] = {"method": self.method, "url": url, "params": params}
        body = BODIES.get((self.service, self.method, self.path))
        if body is not None:
            request |= body(world)
        elif self.body == "required":
            pytest.fail(f"{self.label} takes a body: add one to BODIES")
        return request


def operations(service: str, document: dict[str, Any]) -> list[Operation]:
    """Every operation of the document, reads first (then nothing they read has moved yet)."""
    schemas = document.get("components", {}).get("schemas", {})
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            bearer = [r["bearer"] for r in operation.get("security", []) if "bearer" in r]
            body = operation.get("requestBody")
            json_body = (body or {}).get("content", {}).get("application/json", {})
            fields = json_body.get("schema", {})
            if "$ref" in fields:
                fields = schemas[fields["$ref"].rsplit("/", 1)[1]]
            found.append(
                Operation(
                    service=service,
                    method=method.upper(),
                    path=path,
                    roles=frozenset(Role(name) for name in bearer[0]) if bearer else None,
                    query=tuple(
                        (p["name"], p.get("required", False))
                        for p in operation.get("parameters", [])
                        if p["in"] == "query"
                    ),
                    body=None
                    if body is None
                    else "required"
                    if body.get("required")
                    else "optional",
                    body_fields=frozenset(fields.get("properties", {})),
                )
            )
    return sorted(found, key=lambda op: ["GET", "PUT", "PATCH", "POST", "DELETE"].index(op.method))

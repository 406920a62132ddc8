"""A clinic's day, and the two months after it, under faults: the story the fault harness
tells. Realistic traffic over the four services' HTTP APIs, with a fault injected into each
phase while the traffic is in flight (README.md lists them); `ClinicDay.run` answers what the
invariants need to know of it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from clinic_local.processes import ServiceProcess
from clinic_shared.envelope import Envelope, to_kafka
from clinic_shared.faults import (
    BILLING_AFTER_PROCESSOR_CHARGE,
    HANDLER_DELAY_ENV,
    NOTIFY_AFTER_PROVIDER_ACCEPT,
    RELAY_AFTER_PUBLISH,
    RELAY_BEFORE_PUBLISH,
)
from clinic_shared.kafka import make_producer
from tests.e2e.conftest import eventually

from .harness import ZONE, Clinic, Desk, patient_body

LATE_FEE_CENTS = 10_000
NO_SHOW_FEE_CENTS = 15_000
WALK_INS = 16
"""Patients registered at once while booking's API is killed."""
NOTIFY_HANDLER_DELAY = "0.25"
"""Seconds per event of the first notify consumer: slow enough to be killed mid-backlog."""
BILLING_HANDLER_DELAY = "1.0"
BILLING_MAX_POLL_INTERVAL_MS = "1000"
"""A billing consumer whose handler takes 1 s an event overruns 1 s between polls with any
batch of two (the backlog brings about a dozen): Kafka takes its partitions mid-batch."""
BUSY_POLL_AGE_SECONDS = 1.0
"""A consumer that has not polled for longer than this (it polls every 0.5 s when idle) is
applying a batch."""
POSTGRES_OUTAGE_SECONDS = 6.0
INSTALLMENTS = 3
UNKNOWN_VERSION = "v99"
READ_BY_EVERY_CONSUMER = {
    "booking": "booking.infusion.completed",
    "waitlist": "waitlist.offer.accepted",
    "billing": "billing.payment.succeeded",
}
"""Per producer, an event type every consumer of its topic applies (at v1)."""


@dataclass(frozen=True)
class Injected:
    """A malformed record put on a topic: where it landed and what is wrong with it."""

    topic: str
    partition: int
    offset: int
    kind: str


@dataclass
class Day:
    """What the day did, for the invariants that need to know where to look."""

    patients: dict[str, str] = field(default_factory=dict)
    """Role in the story (`released`, `infused`, `late`, `financed`, `on_time`, `waiting_N`)
    -> patient id."""
    series_hold: str = ""
    series_offers: dict[str, str] = field(default_factory=dict)
    """Waiting patient's role -> the final status of the series offer they were made."""
    plan_id: str = ""
    charge_key_at_crash: str = ""
    """The idempotency key of the charge billing's dispatcher died after the processor took."""
    message_at_crash: str = ""
    """The notify message the provider accepted before notify's dispatcher died."""
    malformed: list[Injected] = field(default_factory=list)
    unknown_versions: list[Injected] = field(default_factory=list)


def _first_monday_morning(after: datetime) -> datetime:
    """09:00 on the first Monday at least a day after `after`, in the clinic's zone: the day
    starts at a fixed clinic-local time whenever the suite runs."""
    day = (after + timedelta(days=1)).astimezone(ZONE).date()
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime.combine(day, time(9, 0), tzinfo=ZONE)


def _start(appointment: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(appointment["start"])


class ClinicDay:
    """The day, phase by phase; each phase asserts what the story needs on the way (an offer
    made, a fee quoted, a fault point reached) and leaves the invariants to the tests."""

    def __init__(self, clinic: Clinic, desk: Desk) -> None:
        self.clinic, self.desk = clinic, desk
        self.day = Day()
        self.courses: dict[str, dict[str, Any]] = {}

    async def run(self) -> Day:
        monday = _first_monday_morning(datetime.now(UTC))
        self.clinic.travel_to(monday)
        await self.morning_with_a_parked_relay()
        await self.the_backlog_under_crashes()
        await self.later_that_morning(monday)
        await self.evening_with_a_broker_restart()
        await self.next_infusion_through_a_database_outage()
        await self.installment_months()
        await eventually(self.clinic.settled, 120, "every outbox published and consumed")
        await eventually(self._nothing_due_waits, 60, "every due job done")
        return self.day

    # ---- Monday 09:00: booking's relay parks before publishing; its events pile up
    async def morning_with_a_parked_relay(self) -> None:
        clinic = self.clinic
        self.relay_parked = clinic.fault_point(RELAY_BEFORE_PUBLISH)
        self.waitlist_relay_parked = clinic.fault_point(RELAY_AFTER_PUBLISH)
        self.charged = clinic.fault_point(BILLING_AFTER_PROCESSOR_CHARGE)
        self.sent = clinic.fault_point(NOTIFY_AFTER_PROVIDER_ACCEPT)
        self.processes = clinic.start_everything(
            {
                ("booking", "relay"): self.relay_parked.env,
                ("waitlist", "relay"): self.waitlist_relay_parked.env,
                ("billing", "dispatcher"): self.charged.env,
                ("notify", "dispatcher"): self.sent.env,
                ("notify", "consumer"): {HANDLER_DELAY_ENV: NOTIFY_HANDLER_DELAY},
                ("billing", "consumer"): {
                    HANDLER_DELAY_ENV: BILLING_HANDLER_DELAY,
                    "BILLING_CONSUMER_MAX_POLL_INTERVAL_MS": BILLING_MAX_POLL_INTERVAL_MS,
                },
            }
        )
        ids = await self.registrations_through_an_api_crash()
        roles = ["released", "infused", "late", "financed", "on_time"]
        roles += [f"waiting_{n}" for n in (1, 2, 3)]
        self.day.patients = dict(zip(roles, ids, strict=False))
        patients = self.day.patients
        desk = self.desk
        for role, patient_id in patients.items():
            if role == "financed":
                await desk.clear_intake(
                    patient_id, "pain", [{"name": "Lorazepam", "class": "benzodiazepine"}]
                )
            elif role == "infused":
                await desk.clear_intake(
                    patient_id, "mood", [{"name": "Dronabinol", "class": "cannabis"}]
                )
            else:
                await desk.clear_intake(patient_id, "mood", [])
            await desk.save_card(patient_id)
        today = clinic.now().astimezone(ZONE).date()
        for role in ("infused", "late", "on_time"):
            self.courses[role] = await desk.book_course(
                patients[role], "mood_induction", first_day=today
            )
        self.courses["financed"] = await desk.book_course(
            patients["financed"], "pain_induction", first_day=today
        )
        self.courses["released"] = await desk.book_course(
            patients["released"], "mood_induction", earliest=clinic.now() + timedelta(days=3)
        )

        released = self.courses["released"]["appointments"]
        for n in (1, 2, 3):
            await desk.join_waitlist_for(patients[f"waiting_{n}"], released[1:])
        single = await desk.cancel(
            patients["on_time"], self.courses["on_time"]["appointments"][2]["id"], late=False
        )
        assert (single["timing"], single["fee_cents"]) == ("on_time", 0), single
        series = await desk.cancel(patients["released"], released[0]["id"], late=False)
        assert (series["timing"], series["fee_cents"]) == ("on_time", 0), series
        assert sorted(series["released_appointment_ids"]) == sorted(a["id"] for a in released[1:])
        self.day.series_hold = series["hold_id"]

        await self.relay_parked.reached()
        unsent = await clinic.unsent_outbox_rows()
        assert unsent["booking"] > 0, "booking's parked relay should have held back its events"
        self.processes[("booking", "relay")].kill()
        clinic.start("booking", "relay")

    async def registrations_through_an_api_crash(self) -> list[str]:
        """Walk-ins registered at once; booking's API is SIGKILLed as the first answer comes
        back, restarted, and every registration sent again with its Idempotency-Key."""
        bodies = {f"walk-in-{n}": patient_body(n) for n in range(WALK_INS)}
        first_answers: dict[str, str] = {}

        async def register(key: str) -> bool:
            try:
                answer = await self.desk.register(bodies[key], key)
            except httpx.TransportError:
                return False
            assert answer.status_code == 201, answer.text
            first_answers[key] = answer.json()["id"]
            return True

        attempts = [asyncio.ensure_future(register(key)) for key in bodies]
        await asyncio.wait(attempts, return_when=asyncio.FIRST_COMPLETED)
        self.processes[("booking", "api")].kill()
        outcomes = await asyncio.gather(*attempts)
        assert not all(outcomes), "the API crash cut no registration off"
        self.clinic.start("booking", "api")
        ids = []
        for key, body in bodies.items():
            again = await self.desk.register(body, key)
            assert again.status_code == 201, again.text
            ids.append(again.json()["id"])
            if key in first_answers:
                assert ids[-1] == first_answers[key], f"{key} answered with another patient"
        assert len(set(ids)) == WALK_INS, "two registration keys made the same patient"
        return ids

    # ---- the backlog arrives: consumers join, leave and die; dispatchers die mid-effect
    async def the_backlog_under_crashes(self) -> None:
        clinic, desk, patients = self.clinic, self.desk, self.day.patients
        await self.billing_consumer_overruns_its_poll_interval()
        billing_partner = clinic.start("billing", "consumer")
        await self.notify_consumer_killed_as_another_joins()

        await self.waitlist_relay_parked.reached()
        self.processes[("waitlist", "relay")].kill()  # after publishing, before marking sent
        clinic.start("waitlist", "relay")

        first = await self.open_offer("waiting_1")
        await desk.answer_offer(patients["waiting_1"], first["id"], "decline")
        self.day.series_offers["waiting_1"] = "declined"
        second = await self.open_offer("waiting_2")
        assert second["block_id"] == first["block_id"] == self.day.series_hold

        await desk.infuse(self.courses["infused"]["appointments"][0]["id"])
        plan: list[dict[str, Any]] = []

        async def financed() -> bool:
            answer = await desk.finance(patients["financed"], self.courses["financed"]["id"])
            assert answer.status_code in (201, 404), answer.text  # 404: course not known yet
            plan[:] = [answer.json()] if answer.status_code == 201 else []
            return bool(plan)

        await eventually(financed, 60, "billing learning the pain course, to finance it")
        self.day.plan_id = plan[0]["id"]

        await self.charged.reached()
        [(key, _, _, succeeded)] = clinic.sandbox.payments()
        assert succeeded and clinic.sandbox.requests(key) == 1
        self.day.charge_key_at_crash = key
        self.processes[("billing", "dispatcher")].kill()
        clinic.start("billing", "dispatcher")

        await self.sent.reached()
        [(message_id, copies)] = clinic.provider_receipts().items()
        assert copies == 1
        self.day.message_at_crash = message_id
        self.processes[("notify", "dispatcher")].kill()
        clinic.start("notify", "dispatcher")

        await self.slow_billing_consumer_leaves(billing_partner)

    async def notify_consumer_killed_as_another_joins(self) -> None:
        """The slow notify consumer is applying the backlog when a second one joins the group
        (a rebalance mid-batch); then the first is SIGKILLed while it still has lag."""
        clinic = self.clinic
        slow = self.processes[("notify", "consumer")]
        joining = clinic.start("notify", "consumer")

        async def joined() -> bool:
            answer = await clinic.liveness(joining)
            return answer is not None and bool(answer[1]["partitions"])

        await eventually(joined, 60, "the second notify consumer given partitions")
        answer = await clinic.liveness(slow)
        assert answer is not None, "the slow notify consumer serves no liveness"
        busy = answer[1]["last_poll_age_seconds"] > BUSY_POLL_AGE_SECONDS or answer[1]["lag"] > 0
        assert busy, f"the slow notify consumer should still be applying its backlog: {answer}"
        slow.kill()

    async def billing_consumer_overruns_its_poll_interval(self) -> None:
        """Billing's only consumer, slower per event than its poll interval, goes longer than
        that interval without polling while it applies the backlog: Kafka takes its
        partitions."""
        slow = self.processes[("billing", "consumer")]
        limit = int(BILLING_MAX_POLL_INTERVAL_MS) / 1000

        async def overran() -> bool:
            answer = await self.clinic.liveness(slow)
            return answer is not None and answer[1]["last_poll_age_seconds"] > limit

        await eventually(overran, 60, "the slow billing consumer overrunning its poll interval")

    async def slow_billing_consumer_leaves(self, partner: ServiceProcess) -> None:
        """The partner joined while the slow consumer was still in its batch: it read events
        the slow one had applied and whose offsets it could no longer commit, and skipped them
        as duplicates (nothing else delivers an event twice before this point). Then the slow
        one leaves the group."""
        clinic = self.clinic
        pair = [self.processes[("billing", "consumer")], partner]
        duplicates: list[int] = []

        async def redelivered() -> bool:
            answers = [await clinic.liveness(consumer) for consumer in pair]
            duplicates[:] = [a[1]["duplicates"] for a in answers if a is not None]
            return sum(duplicates) > 0

        await eventually(redelivered, 60, "the slow billing consumer's batch read again")
        pair[0].stop()

    async def open_offer(self, role: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def offered() -> bool:
            offers = await self.desk.offers(self.day.patients[role])
            found[:] = [o for o in offers if o["status"] == "open"]
            return bool(found)

        await eventually(offered, 60, f"an open offer for {role}")
        [offer] = found
        return offer

    async def offer_settles(self, role: str, status: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def settled() -> bool:
            found[:] = await self.desk.offers(self.day.patients[role])
            return [o["status"] for o in found] == [status]

        await eventually(settled, 60, f"{role}'s offer {status}")
        return found[0]

    # ---- later that morning: an offer expires, another is accepted; a no-show; bad messages
    async def later_that_morning(self, monday: datetime) -> None:
        desk, patients = self.desk, self.day.patients
        no_show_from = _start(self.courses["late"]["appointments"][0]) + timedelta(minutes=20)
        self.clinic.travel_to(max(monday + timedelta(hours=2, minutes=15), no_show_from))
        await self.inject_malformed_messages()

        await self.offer_settles("waiting_2", "expired")  # the waitlist dispatcher, on our clock
        self.day.series_offers["waiting_2"] = "expired"
        third = await self.open_offer("waiting_3")
        assert third["block_id"] == self.day.series_hold
        await desk.answer_offer(patients["waiting_3"], third["id"], "accept")
        await self.offer_settles("waiting_3", "accepted")
        self.day.series_offers["waiting_3"] = "accepted"

        no_show = await desk.no_show(self.courses["late"]["appointments"][0]["id"])
        assert (no_show["status"], no_show["fee_cents"]) == ("no_show", NO_SHOW_FEE_CENTS)
        await desk.infuse(self.courses["financed"]["appointments"][0]["id"])

    async def inject_malformed_messages(self) -> None:
        """On every partition of the topics consumers read, records no consumer can apply
        (see `_malformed`), and an event type of a version no consumer knows."""
        clinic = self.clinic
        producer = make_producer(clinic.bootstrap, client_id="faults-malformed")
        await producer.start()
        try:
            for name, event_type in READ_BY_EVERY_CONSUMER.items():
                topic = clinic.topic(name)
                for partition in sorted(await producer.partitions_for(topic)):
                    records = {
                        **_malformed(name, event_type),
                        UNKNOWN_VERSION: _cloud_event(name, f"{event_type}.{UNKNOWN_VERSION}"),
                    }
                    for kind, (key, value, headers) in records.items():
                        sent = await producer.send_and_wait(
                            topic, value=value, key=key, headers=headers, partition=partition
                        )
                        found = Injected(topic, partition, sent.offset, kind)
                        if kind == UNKNOWN_VERSION:
                            self.day.unknown_versions.append(found)
                        else:
                            self.day.malformed.append(found)
        finally:
            await producer.stop()

    # ---- the evening before the late patient's second infusion: the broker restarts
    async def evening_with_a_broker_restart(self) -> None:
        clinic, desk, patients = self.clinic, self.desk, self.day.patients
        second = self.courses["late"]["appointments"][1]
        evening = datetime.combine(
            _start(second).astimezone(ZONE).date() - timedelta(days=1), time(18, 30), tzinfo=ZONE
        )
        clinic.travel_to(evening)
        await clinic.broker.stop_async()
        try:
            cancelled = await desk.cancel(patients["late"], second["id"], late=True)
            assert (cancelled["timing"], cancelled["fee_cents"]) == ("late", LATE_FEE_CENTS)
            walk_in = await desk.register(patient_body(WALK_INS), "walk-in-evening")
            assert walk_in.status_code == 201, walk_in.text
        finally:
            await clinic.broker.start_async()

        async def fee_paid() -> bool:
            rows = await clinic.rows(
                "billing",
                "SELECT status FROM charge WHERE kind = 'late_cancellation' AND cause_id = :id",
                id=uuid.UUID(second["id"]),
            )
            return [r[0] for r in rows] == ["paid"]

        await eventually(fee_paid, 90, "the late-cancellation fee charged after the restart")

        async def reminded() -> bool:
            sent = await clinic.rows(
                "notify", "SELECT DISTINCT kind FROM message WHERE status = 'sent'"
            )
            return {"fasting", "ride_home", "medication_hold"} <= {r[0] for r in sent}

        await eventually(reminded, 60, "fasting, ride-home and medication-hold reminders sent")

    # ---- the infused patient's next infusion, while PostgreSQL is down for a while
    async def next_infusion_through_a_database_outage(self) -> None:
        """PostgreSQL stops while the SMTP server holds a welcome e-mail and accepts it only
        then, while staff check a patient in and a walk-in registers: every answer meanwhile is
        a 5xx (or a dropped connection); once it is back the same requests go through, once,
        and the e-mail is recorded sent, not left to the reaper as `unknown`."""
        clinic, desk = self.clinic, self.desk
        upcoming = next(
            a for a in self.courses["infused"]["appointments"] if _start(a) > clinic.now()
        )
        clinic.travel_to(_start(upcoming) + timedelta(minutes=30))
        walk_in = patient_body(WALK_INS + 1)
        requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "check-in": lambda: desk.check_in(upcoming["id"]),
            "registration": lambda: desk.register(walk_in, "walk-in-outage"),
        }
        in_flight = await self.message_held_at_the_provider()
        answered: list[int] = []  # a dropped connection is no answer: the client tries again
        await asyncio.to_thread(clinic.postgres.stop)
        try:
            clinic.smtp.release()  # accepted now, while notify cannot write that down
            loop = asyncio.get_running_loop()
            outage_ends = loop.time() + POSTGRES_OUTAGE_SECONDS
            while loop.time() < outage_ends:
                for send in requests.values():
                    answer = await _answer_or_none(send)
                    answered += [answer.status_code] if answer is not None else []
                await asyncio.sleep(0.5)  # a client's pace of retrying, not a wait for state
        finally:
            await asyncio.to_thread(clinic.postgres.start)
        assert answered, "no request was answered while PostgreSQL was down"
        assert all(status >= 500 for status in answered), answered

        requests["completion"] = lambda: desk.complete(upcoming["id"])
        for what, send in requests.items():
            final = await _answered_after_outage(send, what)
            assert final.status_code in (200, 201), f"{what}: {final.status_code} {final.text}"

        async def recorded() -> bool:
            status = await clinic.scalar(
                "notify", "SELECT status FROM message WHERE id = :id", id=uuid.UUID(in_flight)
            )
            assert status in ("sending", "sent"), f"message {in_flight} ended {status}"
            return bool(status == "sent")

        await eventually(recorded, 60, "the e-mail accepted during the outage recorded sent")

    async def message_held_at_the_provider(self) -> str:
        """The SMTP server holds the next e-mail notify sends (a walk-in registers, so there is
        a welcome to send): its message id, once notify has committed it to its send ledger and
        waits for the server's answer."""
        smtp = self.clinic.smtp
        smtp.hold()
        registered = await self.desk.register(patient_body(WALK_INS + 2), "walk-in-before-outage")
        assert registered.status_code == 201, registered.text

        async def held() -> bool:
            return bool(smtp.held)

        await eventually(held, 60, "an e-mail held at the SMTP server")
        return smtp.held[0]

    # ---- a month, and two, later: the financing plan's installments fall due
    async def installment_months(self) -> None:
        plan = await self.desk.plan(self.day.plan_id)
        installments = sorted(plan["installments"], key=lambda c: c["sequence"])
        assert len(installments) == INSTALLMENTS
        for later in installments[1:]:
            due = datetime.combine(
                datetime.fromisoformat(later["due_date"]).date(), time(10), tzinfo=ZONE
            )
            self.clinic.travel_to(due)

            async def paid(charge_id: str = later["id"]) -> bool:
                plan = await self.desk.plan(self.day.plan_id)
                return any(
                    c["id"] == charge_id and c["status"] == "paid" for c in plan["installments"]
                )

            await eventually(paid, 60, f"installment {later['sequence']} paid on its due date")
        final = await self.desk.plan(self.day.plan_id)
        assert (final["status"], final["remaining_cents"]) == ("paid", 0), final

    async def _nothing_due_waits(self) -> bool:
        return not await self.clinic.due_work_waiting()


async def _answer_or_none(
    send: Callable[[], Awaitable[httpx.Response]],
) -> httpx.Response | None:
    """The answer, or None when the connection dropped without one (a client tries again)."""
    try:
        return await send()
    except httpx.TransportError:
        return None


async def _answered_after_outage(
    send: Callable[[], Awaitable[httpx.Response]], what: str
) -> httpx.Response:
    answers: list[httpx.Response] = []

    async def answered() -> bool:
        answer = await _answer_or_none(send)
        answers[:] = [answer] if answer is not None and answer.status_code < 500 else []
        return bool(answers)

    await eventually(answered, 60, f"the {what} answered once PostgreSQL is back")
    return answers[0]


def _cloud_event(
    producer: str, event_type: str, payload: dict[str, str] | None = None
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A CloudEvent of `event_type` from `producer` as Kafka carries it: key, value, headers."""
    subject = str(uuid.uuid4())
    return to_kafka(
        Envelope(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            producer=producer,
            occurred_at=datetime.now(UTC),
            key=subject,
            payload=payload or {"appointment_id": subject},
        )
    )


def _malformed(producer: str, event_type: str) -> dict[str, tuple[bytes, bytes, list[Any]]]:
    """Records of `event_type` (v1) that cannot be applied, by what is wrong with them."""
    key, value, headers = _cloud_event(producer, f"{event_type}.v1")
    future_spec = [
        (name, b"2.0" if name == "ce_specversion" else header) for name, header in headers
    ]
    return {
        "value_not_json": (key, b"\x00\xff{not json", headers),
        "no_cloudevents_headers": (key, value, []),
        "unknown_cloudevents_specversion": (key, value, future_spec),
        "payload_breaks_its_contract": _cloud_event(
            producer, f"{event_type}.v1", {"appointment_id": "not-an-id"}
        ),
    }

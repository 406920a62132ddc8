"""Notify over real Kafka and PostgreSQL, with booking and notify as real processes and e-mail
going to a real SMTP server (aiosmtpd in the test process): reminders scheduled on the clinic's
clock for courses booked over booking's API, a dispatcher killed after the SMTP server accepted
a message that never sends it again, two dispatchers that send each message once, and nothing
personal in notify's events, texts or logs."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest

from clinic_local.processes import ServiceProcess
from clinic_shared.auth import Role
from clinic_shared.contracts.registry import topic_for
from clinic_shared.faults import NOTIFY_AFTER_PROVIDER_ACCEPT
from clinic_shared.policy import load_policy
from clinic_shared.testing import SmtpRecorder, read_topic

from ..phi import scan_logs, scan_records
from .conftest import (
    System,
    cleared_patient,
    eventually,
    make_system,
    register,
    wait_for_file,
)

pytestmark = pytest.mark.slow

CLAIM_TIMEOUT_SECONDS = 5
ZONE = ZoneInfo("America/Los_Angeles")  # the default policy's clinic


def _pain_start_hour(now: datetime) -> int:
    """An opening hour whose fasting window (4 hours earlier) is at least 30 minutes from now
    on the clinic's clock: the quiet hours go around that window, and messages due now go."""
    minutes = now.astimezone(ZONE).hour * 60 + now.astimezone(ZONE).minute
    for hour in (8, 9, 10):
        if abs(minutes - (hour - 4) * 60) >= 30:
            return hour
    raise AssertionError("unreachable: the candidate windows are an hour apart")


PAIN_HOUR = _pain_start_hour(datetime.now(UTC))


def _policy(path: Path) -> Path:
    """Quiet hours of two minutes around the pain course's fasting window, so that the messages
    the tests wait for go out whatever the time of day the suite runs."""
    window = PAIN_HOUR - 4
    path.write_text(
        "notify:\n"
        f'  quiet_hours: {{start: "{window - 1:02d}:59", end: "{window:02d}:01"}}\n'
        f"  delivery:\n    claim_timeout_seconds: {CLAIM_TIMEOUT_SECONDS}\n"
    )
    return path


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpRecorder]:
    server = SmtpRecorder().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def clinic(postgres_cluster, kafka_bootstrap, tmp_path_factory, smtp) -> Iterator[System]:
    """booking (api, relay) and notify (api, consumer, relay); tests start the dispatchers."""
    run = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("e2e-notify-logs")
    system = make_system(
        postgres_cluster, kafka_bootstrap, logs, group=f"e2e-{run}", topic_prefix=f"e2e-{run}."
    )
    system.env["CLINIC_POLICY_FILE"] = str(_policy(logs / "clinic-policy.yaml"))
    system.env.update(
        NOTIFY_SMTP_HOST="127.0.0.1",
        NOTIFY_SMTP_PORT=str(smtp.port),
        NOTIFY_SMTP_STARTTLS="false",
        NOTIFY_MAIL_FROM="Demo Clinic <appointments@clinic.example>",
    )
    try:
        system.start("booking", "api")
        system.start("booking", "relay")
        for role in ("api", "consumer", "relay"):
            system.start("notify", role)
        yield system
    finally:
        system.stop_all()


class Desk:
    def __init__(self, client: httpx.AsyncClient, system: System, smtp: SmtpRecorder) -> None:
        self.client, self.system, self.smtp = client, system, smtp
        self.booking, self.notify = system.urls["booking"], system.urls["notify"]
        self.scheduler = system.headers(Role.SCHEDULER)
        self.clinician = system.headers(Role.CLINICIAN, "dr-e2e")
        self.zone: ZoneInfo = load_policy(system.env["CLINIC_POLICY_FILE"]).clinic.tz

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.system.headers(Role.PATIENT, patient_id)

    async def register(self, first_name: str = "Marisol") -> dict:
        person = {
            "first_name": first_name,
            "last_name": "Vantongeren",
            "date_of_birth": "1979-02-11",
            "email": f"m{uuid.uuid4().hex[:8]}@example.org",
            "phone": "+15035550188",
        }
        return await register(self.client, self.system, person)

    async def cleared_patient(self, condition: str, medications: list[dict]) -> dict:
        return await cleared_patient(
            self.client,
            self.system,
            first_name="Marisol",
            last_name="Vantongeren",
            phone="+15035550188",
            condition=condition,
            diagnosis_codes=["F33.1" if condition == "mood" else "G90.50"],
            medications=medications,
        )

    async def book(self, patient_id: str, protocol: str, starts: list[datetime]) -> list[dict]:
        """A course at exactly these clinic-local times, on one chair."""
        course = await self.client.post(
            f"{self.booking}/v1/courses",
            json={
                "patient_id": patient_id,
                "protocol": protocol,
                "slots": [
                    {"start": s.replace(tzinfo=None).isoformat(), "chair_id": "chair-1"}
                    for s in starts
                ],
            },
            headers=self.scheduler,
        )
        assert course.status_code == 201, course.text
        return sorted(course.json()["appointments"], key=lambda a: a["start"])

    async def notifications(self, patient_id: str) -> list[dict]:
        response = await self.client.get(
            f"{self.notify}/v1/patients/{patient_id}/notifications",
            headers=self.patient(patient_id),
        )
        assert response.status_code == 200, response.text
        return list(response.json()["notifications"])

    async def settled(self, patient_id: str, count: int, timeout: float = 60) -> list[dict]:
        """The patient's messages, once there are `count` of them."""
        found: list[dict] = []

        async def arrived() -> bool:
            found[:] = await self.notifications(patient_id)
            return len(found) >= count

        await eventually(arrived, timeout, f"{count} messages for the patient")
        assert len(found) == count, [(m["kind"], m["step"]) for m in found]
        return found

    def emails_to(self, address: str) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw, rcpts in zip(self.smtp.messages, self.smtp.recipients, strict=True)
            if address in rcpts
        ]

    def texts(self) -> list[dict]:
        sink = Path(self.system.env["NOTIFY_OUTBOX_DIR"]) / "sms.jsonl"
        if not sink.exists():
            return []
        return [json.loads(line) for line in sink.read_text().splitlines() if line]


def _monday_after_the_next_dst_change(zone: ZoneInfo) -> date:
    day = datetime.now(zone).date()
    for _ in range(400):
        noon = datetime.combine(day, datetime.min.time().replace(hour=12), tzinfo=zone)
        if noon.utcoffset() != (noon - timedelta(days=1)).utcoffset():
            break
        day += timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return day


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time().replace(hour=hour), tzinfo=zone)


def _due(messages: list[dict], kind: str, step: str, subject: str) -> datetime:
    [found] = [
        m for m in messages if (m["kind"], m["step"], m["subject_id"]) == (kind, step, subject)
    ]
    return datetime.fromisoformat(found["due_at"])


async def test_a_dispatcher_killed_after_the_smtp_server_accepted_never_sends_it_again(
    clinic: System, smtp: SmtpRecorder, tmp_path
):
    async with httpx.AsyncClient(timeout=30) as client:
        desk = Desk(client, clinic, smtp)
        patient = await desk.register()
        [welcome] = await desk.settled(patient["id"], 1)
        assert (welcome["kind"], welcome["channel"]) == ("welcome", "email")

        marker = tmp_path / "fault"
        doomed = clinic.start(
            "notify",
            "dispatcher",
            CLINIC_FAULT_POINT=NOTIFY_AFTER_PROVIDER_ACCEPT,
            CLINIC_FAULT_MARKER=str(marker),
        )
        await wait_for_file(marker)
        doomed.kill()
        # the SMTP server has the message; notify had only written its send ledger
        assert len(desk.emails_to(patient["email"])) == 1
        [sending] = await desk.notifications(patient["id"])
        assert sending["status"] == "sending"

        restarted = clinic.start("notify", "dispatcher")
        try:

            async def settled_as_unknown() -> bool:
                [message] = await desk.notifications(patient["id"])
                return bool(message["status"] == "unknown")

            await eventually(settled_as_unknown, 30 + CLAIM_TIMEOUT_SECONDS, "the reaper")
            # and the dispatcher goes on sending: the next patient's welcome arrives once
            other = await desk.register("Teodora")

            async def welcomed() -> bool:
                return len(desk.emails_to(other["email"])) == 1

            await eventually(welcomed, 30, "the next welcome e-mail")
        finally:
            restarted.stop()
    [mail] = desk.emails_to(patient["email"])
    assert mail["Message-ID"].startswith(f"<{welcome['id']}@")
    assert len(desk.emails_to(patient["email"])) == 1


async def test_two_dispatchers_send_each_message_once(clinic: System, smtp: SmtpRecorder):
    async with httpx.AsyncClient(timeout=30) as client:
        desk = Desk(client, clinic, smtp)
        patients = [await desk.register(f"Name{n}") for n in range(12)]
        for patient in patients:
            await desk.settled(patient["id"], 1)
        dispatchers: list[ServiceProcess] = [clinic.start("notify", "dispatcher") for _ in range(2)]
        try:

            async def all_sent() -> bool:
                for patient in patients:
                    [message] = await desk.notifications(patient["id"])
                    if message["status"] != "sent":
                        return False
                return True

            await eventually(all_sent, 60, "every welcome sent")
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()
    for patient in patients:
        assert len(desk.emails_to(patient["email"])) == 1, patient["email"]
    ids = [m["Message-ID"] for m in (email.message_from_bytes(raw) for raw in smtp.messages)]
    assert len(ids) == len(set(ids))


async def test_courses_booked_over_the_api_get_every_reminder_on_the_clinic_clock(
    clinic: System, smtp: SmtpRecorder, kafka_bootstrap: str
):
    async with httpx.AsyncClient(timeout=30) as client:
        desk = Desk(client, clinic, smtp)
        zone = desk.zone
        monday = _monday_after_the_next_dst_change(zone)
        mood = await desk.cleared_patient("mood", [{"name": "Dronabinol", "class": "cannabis"}])
        pain = await desk.cleared_patient(
            "pain", [{"name": "Lorazepam", "class": "benzodiazepine"}]
        )
        # Monday, Wednesday and Friday at 13:00 for two weeks, from the day after the change
        mood_days = [monday + timedelta(days=d) for d in (0, 2, 4, 7, 9, 11)]
        mood_course = await desk.book(
            mood["id"], "mood_induction", [_local(d, 13, zone) for d in mood_days]
        )
        # five consecutive mornings, two weeks later
        pain_days = [monday + timedelta(days=14 + d) for d in range(5)]
        pain_course = await desk.book(
            pain["id"], "pain_induction", [_local(d, PAIN_HOUR, zone) for d in pain_days]
        )
        first = datetime.fromisoformat(mood_course[0]["start"])
        assert first == _local(monday, 13, zone)
        pain_starts = [datetime.fromisoformat(a["start"]).astimezone(zone) for a in pain_course]

        # 1 welcome, 2 confirmations, per infusion 3 reminders (2 where the fasting window
        # opens in quiet hours) and a hold
        mood_messages = await desk.settled(mood["id"], 1 + 2 + 6 * 3 + 6)
        pain_messages = await desk.settled(pain["id"], 1 + 2 + 5 * 2 + 5)

        dispatcher = clinic.start("notify", "dispatcher")
        try:

            async def confirmed() -> bool:
                return len(desk.emails_to(mood["email"])) == 2  # welcome and confirmation

            await eventually(confirmed, 60, "the confirmation e-mail")
            cancelled = await client.post(
                f"{desk.booking}/v1/appointments/{pain_course[-1]['id']}/cancel",
                json={"reason": "family visit"},
                headers=desk.patient(pain["id"]),
            )
            assert cancelled.status_code == 200, cancelled.text

            async def told() -> bool:
                return any(
                    "cancel" in str(m["Subject"]).lower() for m in desk.emails_to(pain["email"])
                )

            await eventually(told, 60, "the cancellation e-mail")
        finally:
            dispatcher.stop()
        pain_after = await desk.notifications(pain["id"])
        events = await read_topic(
            kafka_bootstrap, clinic.env["CLINIC_TOPIC_PREFIX"] + topic_for("notify")
        )

    # the first mood infusion, Monday 13:00 just after the change: every message exactly
    appointment = mood_course[0]["id"]
    assert _due(mood_messages, "ride_home", "24h_before", appointment) == _local(
        monday - timedelta(days=1), 13, zone
    )
    assert _due(mood_messages, "fasting", "evening_before", appointment) == _local(
        monday - timedelta(days=1), 18, zone
    )
    assert _due(mood_messages, "fasting", "window_opens", appointment) == first - timedelta(hours=4)
    friday = monday - timedelta(days=3)  # before the change: 18:00 in standard time
    hold = _due(mood_messages, "medication_hold", "cannabis", appointment)
    assert hold == _local(friday, 18, zone)
    assert hold.astimezone(zone).utcoffset() != first.astimezone(zone).utcoffset()
    assert {m["step"] for m in mood_messages if m["kind"] == "medication_hold"} == {"cannabis"}
    for later in mood_course[1:]:
        start = datetime.fromisoformat(later["start"]).astimezone(zone)
        before = start.date() - timedelta(days=1)
        ride = _due(mood_messages, "ride_home", "24h_before", later["id"])
        assert ride == datetime.combine(before, start.time(), tzinfo=zone)
        assert _due(mood_messages, "fasting", "evening_before", later["id"]) == _local(
            before, 18, zone
        )
    # the pain course at 08:00 (or 09:00, 10:00): the fasting window opens 4 hours earlier, in
    # quiet hours, so only the evening message; the ride the day before at the same time;
    # benzodiazepines held from the evening before
    for appointment_json, start in zip(pain_course, pain_starts, strict=True):
        subject = appointment_json["id"]
        steps = {(m["kind"], m["step"]) for m in pain_messages if m["subject_id"] == subject}
        assert steps == {
            ("fasting", "evening_before"),
            ("ride_home", "24h_before"),
            ("medication_hold", "benzodiazepine"),
        }
        day_before = start.date() - timedelta(days=1)
        assert _due(pain_messages, "ride_home", "24h_before", subject) == _local(
            day_before, 8, zone
        )
        assert _due(pain_messages, "medication_hold", "benzodiazepine", subject) == _local(
            day_before, 18, zone
        )
    # the confirmation's calendar holds the six appointments
    [confirmation] = [m for m in desk.emails_to(mood["email"]) if "booked" in str(m["Subject"])]
    [attachment] = [p for p in confirmation.iter_attachments()]
    calendar = icalendar.Calendar.from_ical(attachment.get_content())
    starts = sorted(e.decoded("DTSTART") for e in calendar.walk("VEVENT"))
    assert starts == [datetime.fromisoformat(a["start"]) for a in mood_course]
    assert str(calendar["METHOD"]) == "REQUEST"
    # the cancelled pain appointment: its reminders cancelled, the notice sent with a CANCEL
    last = pain_course[-1]["id"]
    assert {m["status"] for m in pain_after if m["subject_id"] == last} == {"cancelled"}
    [notice] = [m for m in desk.emails_to(pain["email"]) if "cancel" in str(m["Subject"]).lower()]
    [ics] = list(notice.iter_attachments())
    cancel = icalendar.Calendar.from_ical(ics.get_content())
    assert str(cancel["METHOD"]) == "CANCEL"
    # the texts sent so far (the notices) name neither the patient nor the treatment
    texts = [t["body"] for t in desk.texts()]
    assert texts
    personal = [mood["first_name"], mood["last_name"], mood["email"], "5550188"]
    banned = ["ketamine", "infusion", "depress", "benzodiazepine", "cannabis", "lorazepam"]
    for body in texts:
        for word in personal + banned:
            assert word.lower() not in body.lower(), body
        assert not re.search(r"\b[A-Z]\d{2}\.\d", body), body
    # notify's events: ids, channels and times only; nothing personal, no treatment, no kinds
    payloads = " ".join(r.value.decode() for r in events).lower()
    assert '"message_id"' in payloads
    for word in [*banned, "medication", "ride_home", "fasting"]:
        assert word not in payloads, word
    published = scan_records(events)
    assert not published.leaks, published.report()
    # and notify's logs (every process of it, this module's runs so far): none of it either
    log_files = sorted(clinic.log_dir.glob("notify-*.log"))
    logs = " ".join(p.read_text() for p in log_files).lower()
    assert "dispatcher started" in logs
    for word in banned:
        assert word not in logs, word
    logged = scan_logs(log_files)
    assert not logged.leaks, logged.report()

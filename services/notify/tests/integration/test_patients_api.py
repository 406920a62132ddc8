"""Notify's patient-facing API and the SMS provider's webhook, through HTTP.

Preferences (who may read and change them, what is refused, how pending messages follow them),
a patient's message list, and replies to the ride-home text: signed the way Twilio signs them,
recorded once, and confirmed in booking by the `RideReplies` due-queue job.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from clinic_shared.contracts import booking
from clinic_shared.testing import bearer
from notify.adapters.orm import InboundReplyRow
from notify.adapters.texts import sign_twilio_request

# The same values as the `desk` fixture's settings (conftest.py).
NOW = datetime(2026, 11, 20, 17, 5, tzinfo=ZoneInfo("UTC"))  # Friday 09:05 in Portland
SMS_TOKEN = "twilio-auth-token-for-tests"
INBOUND_URL = "https://notify.clinic.test/v1/inbound/sms"
PHONE = "+15035550111"  # desk.new_patient()'s phone
CLINIC_PHONE = "+1-503-555-0100"

ZONE = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 11, 24, 13, 0, tzinfo=ZONE)  # Tuesday 13:00
END = START + timedelta(hours=2)
RIDE_DUE = datetime(2026, 11, 23, 13, 0, tzinfo=ZONE)  # 24 hours before, Monday 13:00
EVENING_BEFORE = datetime(2026, 11, 23, 18, 0, tzinfo=ZONE)  # the fasting reminder
CONFIRMED = "<Message>Thank you: your ride home is confirmed.</Message>"
UNMATCHED = "We could not match your reply to an upcoming visit."
INBOUND = InboundReplyRow.__table__


# helpers ----------------------------------------------------------------------------------------


def appointment_booked(
    patient_id: UUID, appointment_id: UUID, course_id: UUID
) -> booking.AppointmentBooked:
    return booking.AppointmentBooked(
        appointment_id=appointment_id,
        course_id=course_id,
        patient_id=patient_id,
        protocol="mood_induction",
        family="mood",
        sequence=1,
        resource_id="chair-1",
        start=START,
        end=END,
        first_visit=True,
    )


def course_booked(patient_id: UUID, appointment_id: UUID, course_id: UUID) -> booking.CourseBooked:
    return booking.CourseBooked(
        course_id=course_id,
        patient_id=patient_id,
        protocol="mood_induction",
        family="mood",
        slots=[
            booking.SlotFact(
                appointment_id=appointment_id, resource_id="chair-1", start=START, end=END
            )
        ],
        booked_at=NOW,
        booked_by="patient",
    )


async def book(
    desk: Any, *, with_course: bool = False, course_id: UUID | None = None
) -> tuple[UUID, UUID]:
    """A patient with a mood infusion on Tuesday at 13:00: (patient id, appointment id)."""
    patient_id = desk.new_patient()
    appointment_id, course_id = uuid.uuid4(), course_id or uuid.uuid4()
    if with_course:
        assert await desk.deliver(course_booked(patient_id, appointment_id, course_id))
    assert await desk.deliver(appointment_booked(patient_id, appointment_id, course_id))
    return patient_id, appointment_id


async def ride_text_sent(desk: Any, course_id: UUID | None = None) -> tuple[UUID, UUID]:
    """Booked, and the ride-home text gone out to the patient's phone (Monday 13:01)."""
    patient_id, appointment_id = await book(desk, course_id=course_id)
    desk.clock.set(RIDE_DUE + timedelta(minutes=1))
    await desk.run_due()
    [text] = desk.sms.sent
    assert text.to == PHONE
    assert "Reply YES" in text.body
    return patient_id, appointment_id


def signed(params: Mapping[str, str], token: str = SMS_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": sign_twilio_request(INBOUND_URL, params, token)}


async def inbound(
    desk: Any, params: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> httpx.Response:
    return await desk.client.post(
        "/v1/inbound/sms",
        data=dict(params),
        headers=signed(params) if headers is None else dict(headers),
    )


def reply_form(body: str = "yes ", sid: str = "SM" + "1" * 32, sender: str = PHONE) -> dict:
    return {"MessageSid": sid, "From": sender, "To": "+15035550100", "Body": body}


async def replies(desk: Any) -> list[dict[str, Any]]:
    async with desk.app.state.infra.engine.connect() as conn:
        rows = await conn.execute(sa.select(INBOUND).order_by(INBOUND.c.received_at))
        return [dict(r) for r in rows.mappings()]


async def get_preferences(desk: Any, patient_id: UUID) -> dict[str, Any]:
    response = await desk.client.get(
        f"/v1/patients/{patient_id}/preferences", headers=desk.patient(patient_id)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def put_preferences(desk: Any, patient_id: UUID, body: Any) -> httpx.Response:
    return await desk.client.put(
        f"/v1/patients/{patient_id}/preferences", json=body, headers=desk.patient(patient_id)
    )


def by_step(notifications: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(n["kind"], n["step"], n["channel"]): n for n in notifications}


def local(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(ZONE)


# preferences ------------------------------------------------------------------------------------


async def test_preferences_default_to_email_and_sms_with_the_clinics_quiet_hours(desk: Any) -> None:
    patient_id = desk.new_patient()

    assert await get_preferences(desk, patient_id) == {
        "patient_id": str(patient_id),
        "channels": ["email", "sms"],
        "quiet_hours": None,
        "clinic_quiet_hours": {"start": "21:00:00", "end": "08:00:00"},
        "push_device_registered": False,
    }


async def test_a_patient_replaces_their_preferences_and_reads_them_back(desk: Any) -> None:
    patient_id = desk.new_patient()
    body = {
        "channels": ["push", "email"],
        "quiet_hours": {"start": "17:00", "end": "22:00"},
        "push_device": "device-token-0001",
    }

    response = await put_preferences(desk, patient_id, body)

    assert response.status_code == 200, response.text
    expected = {
        "patient_id": str(patient_id),
        "channels": ["email", "push"],
        "quiet_hours": {"start": "17:00:00", "end": "22:00:00"},
        "clinic_quiet_hours": {"start": "21:00:00", "end": "08:00:00"},
        "push_device_registered": True,
    }
    assert response.json() == expected
    assert await get_preferences(desk, patient_id) == expected

    # and again, back to texts without own quiet hours: the earlier ones do not linger
    response = await put_preferences(desk, patient_id, {"channels": ["sms"]})
    assert response.status_code == 200, response.text
    again = await get_preferences(desk, patient_id)
    assert (again["channels"], again["quiet_hours"], again["push_device_registered"]) == (
        ["sms"],
        None,
        False,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"channels": []}, id="no_channel"),
        pytest.param({"channels": ["fax"]}, id="unknown_channel"),
        pytest.param({"channels": ["sms", "sms"]}, id="duplicate_channel"),
        pytest.param({"channels": ["push"]}, id="push_without_device"),
        pytest.param(
            {"channels": ["sms"], "quiet_hours": {"start": "17:00", "end": "17:00"}},
            id="empty_quiet_hours",
        ),
        pytest.param({"channels": ["sms"], "sound": "loud"}, id="unknown_field"),
        pytest.param(
            {"channels": ["sms"], "quiet_hours": {"start": "25:00", "end": "08:00"}},
            id="bad_time",
        ),
        pytest.param(
            {"channels": ["sms"], "quiet_hours": {"start": "17:00+02:00", "end": "22:00"}},
            id="time_with_offset",
        ),
        pytest.param({"quiet_hours": {"start": "17:00", "end": "22:00"}}, id="no_channels"),
    ],
)
async def test_invalid_preferences_are_refused_and_change_nothing(
    desk: Any, body: dict[str, Any]
) -> None:
    patient_id = desk.new_patient()
    saved = {"channels": ["email"], "quiet_hours": {"start": "12:00", "end": "13:00"}}
    assert (await put_preferences(desk, patient_id, saved)).status_code == 200
    before = await get_preferences(desk, patient_id)

    response = await put_preferences(desk, patient_id, body)

    problem = desk.assert_problem(response, 422, "validation_error")
    assert problem["errors"]
    assert await get_preferences(desk, patient_id) == before
    assert before["channels"] == ["email"]


async def test_another_patients_preferences_answer_404_and_stay_untouched(desk: Any) -> None:
    owner, intruder = desk.new_patient(), desk.new_patient()
    url = f"/v1/patients/{owner}/preferences"

    desk.assert_problem(await desk.client.get(url, headers=desk.patient(intruder)), 404)
    response = await desk.client.put(
        url, json={"channels": ["email"]}, headers=desk.patient(intruder)
    )
    desk.assert_problem(response, 404)

    assert (await get_preferences(desk, owner))["channels"] == ["email", "sms"]


async def test_staff_read_preferences_but_only_the_patient_changes_them(desk: Any) -> None:
    patient_id = desk.new_patient()
    url = f"/v1/patients/{patient_id}/preferences"
    assert (await put_preferences(desk, patient_id, {"channels": ["sms"]})).status_code == 200

    seen = await desk.client.get(url, headers=desk.scheduler)
    assert seen.status_code == 200, seen.text
    assert seen.json()["channels"] == ["sms"]

    for role in ("scheduler", "clinician", "admin"):
        refused = await desk.client.put(
            url, json={"channels": ["email"]}, headers=bearer(desk.secret, role, f"{role}-1")
        )
        desk.assert_problem(refused, 403, "forbidden")
    assert (await get_preferences(desk, patient_id))["channels"] == ["sms"]


async def test_preferences_need_a_token(desk: Any) -> None:
    patient_id = desk.new_patient()
    url = f"/v1/patients/{patient_id}/preferences"

    desk.assert_problem(await desk.client.get(url), 401)
    desk.assert_problem(await desk.client.put(url, json={"channels": ["email"]}), 401)
    bad = {"Authorization": "Bearer not-a-token"}
    desk.assert_problem(await desk.client.get(url, headers=bad), 401, "invalid_token")


# preferences applied to pending messages --------------------------------------------------------


async def test_turning_texts_off_cancels_pending_texts_and_keeps_email(desk: Any) -> None:
    patient_id, _ = await book(desk, with_course=True)
    before = by_step(await desk.notifications(patient_id))
    assert before[("confirmation", "course", "sms")]["status"] == "scheduled"
    assert before[("ride_home", "24h_before", "sms")]["status"] == "scheduled"

    response = await put_preferences(desk, patient_id, {"channels": ["email"]})

    assert response.status_code == 200, response.text
    after = await desk.notifications(patient_id)
    assert {(n["channel"], n["status"]) for n in after} == {
        ("sms", "cancelled"),
        ("email", "scheduled"),
    }
    assert by_step(after)[("confirmation", "course", "email")]["status"] == "scheduled"
    assert {n["kind"] for n in after if n["channel"] == "sms"} == {
        "confirmation",
        "fasting",
        "ride_home",
    }

    # what falls due later goes out on the allowed channel only
    await desk.run_due()
    desk.clock.set(END)
    await desk.run_due()
    assert desk.sms.sent == []
    [confirmation] = desk.emails()
    assert confirmation["To"] == "ada.quinn@example.com"
    sent = by_step(await desk.notifications(patient_id))
    assert sent[("confirmation", "course", "email")]["status"] == "sent"


async def test_turning_texts_off_still_leaves_the_patient_their_reminders_by_email(
    desk: Any,
) -> None:
    patient_id, _ = await book(desk)

    assert (await put_preferences(desk, patient_id, {"channels": ["email"]})).status_code == 200

    pending = {
        (n["kind"], n["step"])
        for n in await desk.notifications(patient_id)
        if n["status"] == "scheduled" and n["channel"] == "email"
    }
    assert ("ride_home", "24h_before") in pending
    assert ("fasting", "evening_before") in pending


async def test_texts_turned_off_and_on_again_come_back_and_push_joins(desk: Any) -> None:
    patient_id, _ = await book(desk)
    before = by_step(await desk.notifications(patient_id))
    ride_sms = before[("ride_home", "24h_before", "sms")]

    await put_preferences(desk, patient_id, {"channels": ["email"]})
    body = {"channels": ["email", "sms", "push"], "push_device": "device-token-0123456789"}
    assert (await put_preferences(desk, patient_id, body)).status_code == 200

    after = by_step(await desk.notifications(patient_id))
    # the same text message is scheduled again, a push copy joins, the e-mail stand-in goes
    assert after[("ride_home", "24h_before", "sms")]["id"] == ride_sms["id"]
    assert after[("ride_home", "24h_before", "sms")]["status"] == "scheduled"
    assert after[("ride_home", "24h_before", "push")]["status"] == "scheduled"
    assert after[("ride_home", "24h_before", "push")]["due_at"] == ride_sms["due_at"]
    assert after[("ride_home", "24h_before", "email")]["status"] == "cancelled"


async def test_own_quiet_hours_move_a_pending_reminder_before_they_begin(desk: Any) -> None:
    patient_id, _ = await book(desk)
    planned = by_step(await desk.notifications(patient_id))
    evening = planned[("fasting", "evening_before", "sms")]
    assert local(evening["due_at"]) == EVENING_BEFORE
    ride_due = planned[("ride_home", "24h_before", "sms")]["due_at"]

    response = await put_preferences(
        desk,
        patient_id,
        {"channels": ["email", "sms"], "quiet_hours": {"start": "17:00", "end": "22:00"}},
    )

    assert response.status_code == 200, response.text
    moved = by_step(await desk.notifications(patient_id))
    fasting = moved[("fasting", "evening_before", "sms")]
    assert local(fasting["due_at"]) == datetime(2026, 11, 23, 16, 59, tzinfo=ZONE)
    assert fasting["status"] == "scheduled"
    assert moved[("ride_home", "24h_before", "sms")]["due_at"] == ride_due  # outside: unmoved

    # it goes out at its new time, not before
    desk.clock.set(datetime(2026, 11, 23, 16, 58, tzinfo=ZONE))
    await desk.run_due()
    assert len(desk.sms.sent) == 1  # the ride-home text only
    desk.clock.set(datetime(2026, 11, 23, 16, 59, tzinfo=ZONE))
    await desk.run_due()
    assert len(desk.sms.sent) == 2
    fasting = by_step(await desk.notifications(patient_id))[("fasting", "evening_before", "sms")]
    assert fasting["status"] == "sent"
    assert local(fasting["sent_at"]) == datetime(2026, 11, 23, 16, 59, tzinfo=ZONE)


# replies to the ride-home text ------------------------------------------------------------------


async def test_a_signed_yes_confirms_the_ride_in_booking_once(desk: Any) -> None:
    patient_id, appointment_id = await ride_text_sent(desk)
    form = reply_form("yes ")

    response = await inbound(desk, form)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response>')
    assert CONFIRMED in response.text
    [reply] = await replies(desk)
    assert (reply["meaning"], reply["status"]) == ("yes", "pending")
    assert (reply["appointment_id"], reply["patient_id"]) == (appointment_id, patient_id)
    assert PHONE not in str(reply.values())  # the number is kept as a digest only
    assert desk.directory.confirmed == []  # booking is told by the job, not the webhook

    await desk.run_due()

    assert desk.directory.confirmed == [(appointment_id, patient_id)]
    assert [r["status"] for r in await replies(desk)] == ["applied"]

    # Twilio delivers the same webhook again: the same answer, nothing more recorded or sent
    again = await inbound(desk, form)
    assert again.status_code == 200, again.text
    assert CONFIRMED in again.text
    await desk.run_due()
    assert desk.directory.confirmed == [(appointment_id, patient_id)]
    assert len(await replies(desk)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Twilio-Signature": ""}, id="empty"),
        pytest.param(signed(reply_form(), token="someone-elses-token"), id="wrong_token"),
        pytest.param(signed(reply_form(body="no")), id="other_body"),
        pytest.param(signed({**reply_form(), "From": "+15035550199"}), id="other_sender"),
    ],
)
async def test_an_unsigned_or_badly_signed_reply_is_refused_and_not_recorded(
    desk: Any, headers: dict[str, Any]
) -> None:
    await ride_text_sent(desk)

    response = await inbound(desk, reply_form(), headers=headers)

    desk.assert_problem(response, 400, "bad_signature")
    assert await replies(desk) == []
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_a_signed_reply_without_message_sid_is_malformed(desk: Any) -> None:
    await ride_text_sent(desk)
    form = {"From": PHONE, "Body": "YES"}

    response = await inbound(desk, form)

    desk.assert_problem(response, 400, "malformed_webhook")
    assert await replies(desk) == []
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_other_words_are_recorded_by_meaning_only_and_answered_with_nothing(
    desk: Any,
) -> None:
    await ride_text_sent(desk)
    form = reply_form("Sí, gracias 👍 & see you + thanks")

    response = await inbound(desk, form)  # UTF-8, percent-encoded, signed over the decoded text

    assert response.status_code == 200, response.text
    assert "<Message>" not in response.text
    [reply] = await replies(desk)
    assert (reply["meaning"], reply["status"]) == ("other", "ignored")
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_a_webhook_that_is_not_a_small_form_post_is_refused(desk: Any) -> None:
    await ride_text_sent(desk)
    form = reply_form()
    url = "/v1/inbound/sms"

    as_json = await desk.client.post(url, json=form, headers=signed(form))
    desk.assert_problem(as_json, 415, "unsupported_media_type")

    padded = {**form, "Padding": "x" * 70_000}
    too_large = await desk.client.post(url, data=padded, headers=signed(padded))
    desk.assert_problem(too_large, 413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"Padding=" + b"x" * 8_000 + b"&"

    streamed = await desk.client.post(
        url,
        content=chunks(),
        headers={**signed(form), "Content-Type": "application/x-www-form-urlencoded"},
    )
    desk.assert_problem(streamed, 413, "too_large")

    not_utf8 = await desk.client.post(
        url,
        content=b"MessageSid=SM1&From=%2B15035550111&Body=%FF",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    desk.assert_problem(not_utf8, 400, "malformed_webhook")

    assert await replies(desk) == []
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_a_yes_from_a_number_never_texted_is_not_matched(desk: Any) -> None:
    await ride_text_sent(desk)

    response = await inbound(desk, reply_form("YES", sender="+15035550199"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert UNMATCHED in response.text
    assert CLINIC_PHONE in response.text
    [reply] = await replies(desk)
    assert (reply["status"], reply["appointment_id"], reply["patient_id"]) == (
        "unmatched",
        None,
        None,
    )
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_a_yes_after_the_visit_is_not_matched_however_often_it_comes(desk: Any) -> None:
    await ride_text_sent(desk)
    desk.clock.set(END + timedelta(minutes=5))
    form = reply_form("yes")

    first = await inbound(desk, form)
    again = await inbound(desk, form)  # Twilio's retry gets the answer the first one got

    for response in (first, again):
        assert response.status_code == 200, response.text
        assert UNMATCHED in response.text
        assert CONFIRMED not in response.text
    assert [r["status"] for r in await replies(desk)] == ["unmatched"]
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_a_yes_for_a_cancelled_visit_is_not_matched(desk: Any) -> None:
    course_id = uuid.uuid4()
    patient_id, appointment_id = await ride_text_sent(desk, course_id)
    cancelled = booking.AppointmentCancelled(
        appointment_id=appointment_id,
        course_id=course_id,
        patient_id=patient_id,
        start=START,
        cancelled_at=desk.clock.now(),
        cancelled_by="patient",
        timing="late",
        seconds_before_start=int((START - desk.clock.now()).total_seconds()),
        fee_cents=0,
        fee_waived=True,
        reason="cancelled",
    )
    assert await desk.deliver(cancelled)

    response = await inbound(desk, reply_form("YES"))

    assert response.status_code == 200, response.text
    assert UNMATCHED in response.text
    [reply] = await replies(desk)
    assert reply["status"] == "unmatched"
    await desk.run_due()
    assert desk.directory.confirmed == []


async def test_booking_away_when_the_job_runs_is_tried_again_later(desk: Any) -> None:
    patient_id, appointment_id = await ride_text_sent(desk)
    assert CONFIRMED in (await inbound(desk, reply_form())).text
    desk.directory.unavailable = True

    await desk.run_due()

    assert desk.directory.confirmed == []
    [reply] = await replies(desk)
    assert (reply["status"], reply["attempts"]) == ("pending", 1)
    assert reply["due_at"] > desk.clock.now()

    desk.directory.unavailable = False
    await desk.run_due()
    assert desk.directory.confirmed == []  # not due again yet

    desk.clock.set(reply["due_at"])
    await desk.run_due()
    assert desk.directory.confirmed == [(appointment_id, patient_id)]
    assert [(r["status"], r["attempts"]) for r in await replies(desk)] == [("applied", 2)]

    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()
    assert desk.directory.confirmed == [(appointment_id, patient_id)]


async def test_booking_refusing_the_ride_is_final(desk: Any) -> None:
    await ride_text_sent(desk)
    assert CONFIRMED in (await inbound(desk, reply_form())).text
    desk.directory.refuse = True

    await desk.run_due()

    assert [(r["status"], r["attempts"]) for r in await replies(desk)] == [("refused", 1)]
    desk.directory.refuse = False
    desk.clock.advance(timedelta(hours=1))
    await desk.run_due()
    assert desk.directory.confirmed == []
    assert [(r["status"], r["attempts"]) for r in await replies(desk)] == [("refused", 1)]


async def test_stop_from_the_patients_number_turns_their_texts_off(desk: Any) -> None:
    patient_id, _ = await ride_text_sent(desk)
    assert (await get_preferences(desk, patient_id))["channels"] == ["email", "sms"]

    response = await inbound(desk, reply_form("STOP", sid="SM" + "2" * 32))

    assert response.status_code == 200, response.text
    assert "<Message>" not in response.text  # the provider answers STOP itself
    assert (await get_preferences(desk, patient_id))["channels"] == ["email"]
    [reply] = await replies(desk)
    assert (reply["meaning"], reply["status"]) == ("stop", "applied")
    pending_texts = [
        n
        for n in await desk.notifications(patient_id)
        if n["channel"] == "sms" and n["status"] == "scheduled"
    ]
    assert pending_texts == []
    desk.clock.set(END)
    await desk.run_due()
    assert len(desk.sms.sent) == 1  # the ride-home text before STOP, nothing after
    await desk.run_due()
    assert desk.directory.confirmed == []


# the patient's messages -------------------------------------------------------------------------


async def test_a_patient_sees_their_own_messages(desk: Any) -> None:
    patient_id, appointment_id = await ride_text_sent(desk)

    response = await desk.client.get(
        f"/v1/patients/{patient_id}/notifications", headers=desk.patient(patient_id)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient_id"] == str(patient_id)
    found = by_step(body["notifications"])
    assert set(found) == {
        ("ride_home", "24h_before", "sms"),
        ("fasting", "evening_before", "sms"),
        ("fasting", "window_opens", "sms"),
    }
    ride = found[("ride_home", "24h_before", "sms")]
    assert ride["status"] == "sent"
    assert local(ride["due_at"]) == RIDE_DUE
    assert local(ride["sent_at"]) == RIDE_DUE + timedelta(minutes=1)
    assert ride["attempts"] == 1
    assert ride["subject_id"] == str(appointment_id)
    evening = found[("fasting", "evening_before", "sms")]
    assert (evening["status"], local(evening["due_at"]), evening["sent_at"]) == (
        "scheduled",
        EVENING_BEFORE,
        None,
    )
    assert [n["due_at"] for n in body["notifications"]] == sorted(
        n["due_at"] for n in body["notifications"]
    )


async def test_another_patients_messages_answer_404(desk: Any) -> None:
    patient_id, _ = await book(desk)
    other = desk.new_patient()

    response = await desk.client.get(
        f"/v1/patients/{patient_id}/notifications", headers=desk.patient(other)
    )

    desk.assert_problem(response, 404, "not_found")
    own = await desk.client.get(f"/v1/patients/{other}/notifications", headers=desk.patient(other))
    assert own.status_code == 200
    assert own.json()["notifications"] == []


@pytest.mark.parametrize("role", ["scheduler", "clinician", "billing", "admin", "service"])
async def test_staff_see_a_patients_messages(desk: Any, role: str) -> None:
    patient_id, _ = await book(desk)

    response = await desk.client.get(
        f"/v1/patients/{patient_id}/notifications", headers=bearer(desk.secret, role, "staff-1")
    )

    assert response.status_code == 200, response.text
    assert {n["kind"] for n in response.json()["notifications"]} == {"fasting", "ride_home"}


async def test_messages_need_a_token(desk: Any) -> None:
    patient_id, _ = await book(desk)

    response = await desk.client.get(f"/v1/patients/{patient_id}/notifications")

    desk.assert_problem(response, 401, "unauthenticated")

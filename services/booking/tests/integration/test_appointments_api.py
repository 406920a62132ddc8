"""Changing appointments over HTTP: the 48-hour rule to the second, series release and holds,
no-shows, fees and waivers, check-in, completion, rides. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from booking.adapters.orm import AuditRow

START = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Monday 09:00 in Portland
MAINTENANCE = "2026-11-30T09:00:00-08:00"


async def _booked_maintenance(clinic, start: str = MAINTENANCE, chair: str = "chair-1"):
    pid = await clinic.cleared_patient()
    response = await clinic.book(pid, "maintenance", [start], chair)
    assert response.status_code == 201, response.text
    return pid, response.json()["appointments"][0]["id"]


# The 48-hour rule


async def test_cancelling_exactly_48_hours_before_start_is_on_time_and_free(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    clinic.clock.set(START - timedelta(hours=48))

    response = await clinic.cancel(appointment_id, headers=clinic.patient(pid))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["timing"], body["fee_cents"]) == ("cancelled", "on_time", 0)
    [event] = await clinic.events("booking.appointment.cancelled.v1")
    assert event["payload"]["timing"] == "on_time"
    assert event["payload"]["seconds_before_start"] == 48 * 3600
    assert "reason" not in event["payload"] or event["payload"]["reason"] == "cancelled"


async def test_one_second_later_is_late_and_needs_the_fee_acknowledged(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    clinic.clock.set(START - timedelta(hours=47, minutes=59, seconds=59))

    refused = await clinic.cancel(appointment_id, headers=clinic.patient(pid), reason="work")

    body = clinic.assert_problem(refused, 409, "late_cancellation_unacknowledged")
    assert body["fee_cents"] == 10000
    assert body["hours_before"] == pytest.approx(48, abs=0.01)
    assert body["window_hours"] == 48
    assert (await clinic.appointment(appointment_id))["status"] == "booked"
    assert await clinic.events("booking.appointment.cancelled.v1") == []

    accepted = await clinic.cancel(
        appointment_id, headers=clinic.patient(pid), acknowledge_late_fee=True
    )
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["timing"], accepted.json()["fee_cents"]) == ("late", 10000)
    [event] = await clinic.events("booking.appointment.cancelled.v1")
    assert (event["payload"]["timing"], event["payload"]["fee_cents"]) == ("late", 10000)


async def test_the_rule_counts_elapsed_hours_across_the_daylight_saving_change(clinic):
    # Clocks fell back on Sunday 2026-11-01: 48 elapsed hours before Monday 09:00 PST is
    # Saturday 10:00 PDT, which a wall-clock count would call 47 hours. Only elapsed time counts.
    clinic.clock.set(datetime(2026, 10, 20, 12, 0, tzinfo=UTC))
    _, on_time_id = await _booked_maintenance(clinic, "2026-11-02T09:00:00-08:00")
    _, late_id = await _booked_maintenance(clinic, "2026-11-02T09:00:00-08:00", "chair-2")
    start = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)

    clinic.clock.set(start - timedelta(hours=48))  # Saturday 10:00 PDT
    on_time = await clinic.cancel(on_time_id)
    clinic.clock.set(start - timedelta(hours=48) + timedelta(seconds=1))
    late = await clinic.cancel(late_id)

    assert on_time.json()["timing"] == "on_time"
    clinic.assert_problem(late, 409, "late_cancellation_unacknowledged")


async def test_staff_may_waive_a_late_fee_with_a_reason_and_it_is_audited(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    clinic.clock.set(START - timedelta(hours=3))

    by_patient = await clinic.cancel(
        appointment_id, headers=clinic.patient(pid), waive_fee_reason="please"
    )
    clinic.assert_problem(by_patient, 403)
    waived = await clinic.cancel(appointment_id, waive_fee_reason="hospitalised overnight")

    assert waived.status_code == 200, waived.text
    assert waived.json()["timing"] == "late"
    assert (waived.json()["fee_cents"], waived.json()["fee_waived"]) == (0, True)
    async with clinic.app.state.infra.engine.connect() as conn:
        audit = (await conn.execute(sa.select(AuditRow.__table__))).mappings().all()
    assert [(a["action"], a["reason"], a["actor_id"]) for a in audit] == [
        ("fee_waived", "hospitalised overnight", "sched-1")
    ]
    [event] = await clinic.events("booking.appointment.cancelled.v1")
    assert (event["payload"]["fee_cents"], event["payload"]["fee_waived"]) == (0, True)
    assert "hospitalised" not in str(event)


async def test_an_appointment_that_has_started_cannot_be_cancelled(clinic):
    _, appointment_id = await _booked_maintenance(clinic)
    clinic.clock.set(START + timedelta(minutes=1))

    response = await clinic.cancel(appointment_id, acknowledge_late_fee=True)

    clinic.assert_problem(response, 409, "appointment_started")


# Rescheduling


async def test_rescheduling_on_time_moves_the_appointment_and_frees_the_old_slot(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    response = await clinic.client.post(
        f"/v1/appointments/{appointment_id}/reschedule",
        json={"start": "2026-12-01T13:00:00-08:00", "chair_id": "chair-2"},
        headers=clinic.patient(pid),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["timing"], body["change_fee_cents"], body["chair_id"]) == ("on_time", 0, "chair-2")
    assert body["start"].startswith("2026-12-01T21:00:00")
    [event] = await clinic.events("booking.appointment.rescheduled.v1")
    assert event["payload"]["previous_start"].startswith("2026-11-30T17:00:00")

    other = await clinic.cleared_patient()
    assert (await clinic.book(other, "maintenance", [MAINTENANCE])).status_code == 201


async def test_rescheduling_within_48_hours_is_a_late_change_of_the_old_slot(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    clinic.clock.set(START - timedelta(hours=20))
    url = f"/v1/appointments/{appointment_id}/reschedule"
    move = {"start": "2026-12-07T09:00:00-08:00", "chair_id": "chair-1"}

    refused = await clinic.client.post(url, json=move, headers=clinic.patient(pid))
    clinic.assert_problem(refused, 409, "late_cancellation_unacknowledged")
    assert (await clinic.appointment(appointment_id))["start"].startswith("2026-11-30T17:00")

    moved = await clinic.client.post(
        url, json=move | {"acknowledge_late_fee": True}, headers=clinic.patient(pid)
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["timing"], moved.json()["change_fee_cents"]) == ("late", 10000)


async def test_rescheduling_into_a_taken_slot_or_breaking_the_course_rule_is_refused(clinic):
    pid = await clinic.cleared_patient()
    course = await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)
    second = course.json()["appointments"][1]["id"]
    await _booked_maintenance(clinic, "2026-12-08T09:00:00-08:00", "chair-3")

    next_to_first = await clinic.client.post(
        f"/v1/appointments/{second}/reschedule",
        json={"start": "2026-11-24T09:00:00-08:00", "chair_id": "chair-1"},
        headers=clinic.scheduler,
    )
    clinic.assert_problem(next_to_first, 409, "gap_too_short")
    last = course.json()["appointments"][5]["id"]
    taken = await clinic.client.post(
        f"/v1/appointments/{last}/reschedule",
        json={"start": "2026-12-08T09:00:00-08:00", "chair_id": "chair-3"},
        headers=clinic.scheduler,
    )
    clinic.assert_problem(taken, 409, "slot_taken")


# Series release and holds


async def test_cancelling_the_initial_appointment_releases_the_rest_as_one_held_block(clinic):
    pid = await clinic.cleared_patient()
    course = (await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)).json()
    initial, *rest = course["appointments"]

    response = await clinic.cancel(initial["id"], headers=clinic.patient(pid))

    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["released_appointment_ids"]) == sorted(a["id"] for a in rest)
    assert len(body["held_appointment_ids"]) == 5
    for appointment in rest:
        assert (await clinic.appointment(appointment["id"]))["status"] == "cancelled"
    held = [await clinic.appointment(i) for i in body["held_appointment_ids"]]
    assert {h["status"] for h in held} == {"held"}
    assert {(h["start"], h["chair_id"]) for h in held} == {
        (a["start"], a["chair_id"]) for a in rest
    }
    [released] = await clinic.events("booking.block.released.v1")
    assert released["payload"]["kind"] == "series"
    assert released["payload"]["hold_id"] == body["hold_id"]
    assert {s["appointment_id"] for s in released["payload"]["slots"]} == set(
        body["held_appointment_ids"]
    )
    cancelled = await clinic.events("booking.appointment.cancelled.v1")
    assert (
        sorted(e["payload"]["reason"] for e in cancelled) == ["cancelled"] + ["series_released"] * 5
    )

    # Nobody can book the held slots outside the waitlist.
    other = await clinic.cleared_patient()
    taken = await clinic.book(other, "maintenance", [clinic.MOOD_COURSE[2]])
    clinic.assert_problem(taken, 409, "slot_taken")
    clinic.assert_no_overlap(await clinic.live_occupancies())


async def test_cancelling_a_later_appointment_releases_just_that_slot(clinic):
    pid = await clinic.cleared_patient()
    course = (await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)).json()
    third = course["appointments"][2]

    response = await clinic.cancel(third["id"], headers=clinic.patient(pid))

    assert response.json()["released_appointment_ids"] == []
    assert len(response.json()["held_appointment_ids"]) == 1
    [released] = await clinic.events("booking.block.released.v1")
    assert released["payload"]["kind"] == "single"
    [slot] = released["payload"]["slots"]
    assert datetime.fromisoformat(slot["start"]) == datetime.fromisoformat(third["start"])
    statuses = [(await clinic.appointment(a["id"]))["status"] for a in course["appointments"]]
    assert statuses == ["booked", "booked", "cancelled", "booked", "booked", "booked"]


@pytest.fixture
async def reviewed_clinic(database_url, jwt_secret, tmp_path: Path, request):
    policy = tmp_path / "policy.yaml"
    policy.write_text("booking:\n  cancellation:\n    series_release: scheduler_review\n")
    make_clinic = request.getfixturevalue("clinic_factory")
    async for built in make_clinic(database_url, jwt_secret, policy):
        yield built


async def test_under_scheduler_review_the_block_waits_for_a_scheduler(reviewed_clinic):
    clinic = reviewed_clinic
    pid = await clinic.cleared_patient()
    course = (await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)).json()

    body = (await clinic.cancel(course["appointments"][0]["id"])).json()

    assert await clinic.events("booking.block.released.v1") == []
    [placed] = await clinic.events("booking.hold.placed.v1")
    assert placed["payload"]["awaiting_review"] is True
    waiting = await clinic.client.get(
        "/v1/holds", params={"status": "awaiting_review"}, headers=clinic.scheduler
    )
    assert [h["id"] for h in waiting.json()["holds"]] == [body["hold_id"]]
    by_patient = await clinic.client.post(
        f"/v1/holds/{body['hold_id']}/release", headers=clinic.patient(pid)
    )
    clinic.assert_problem(by_patient, 403)

    confirmed = await clinic.client.post(
        f"/v1/holds/{body['hold_id']}/release", headers=clinic.scheduler
    )

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "released"
    [released] = await clinic.events("booking.block.released.v1")
    assert len(released["payload"]["slots"]) == 5


# Day of treatment


async def test_check_in_and_completion_give_each_infusion_its_lifetime_ordinal(clinic):
    pid = await clinic.cleared_patient()
    course = (
        await clinic.book(
            pid, "mood_booster", ["2026-11-23T09:00:00-08:00", "2026-11-25T09:00:00-08:00"]
        )
    ).json()
    first, second = (a["id"] for a in course["appointments"])

    early = await clinic.client.post(f"/v1/appointments/{first}/check-in", headers=clinic.clinician)
    clinic.assert_problem(early, 409, "too_early_for_check_in")
    for appointment_id, day in ((first, 23), (second, 25)):
        clinic.clock.set(datetime(2026, 11, day, 16, 50, tzinfo=UTC))
        checked = await clinic.client.post(
            f"/v1/appointments/{appointment_id}/check-in", headers=clinic.scheduler
        )
        assert checked.json()["status"] == "checked_in", checked.text
        done = await clinic.client.post(
            f"/v1/appointments/{appointment_id}/complete",
            json={"infusion_minutes": 55},
            headers=clinic.clinician,
        )
        assert done.json()["status"] == "completed", done.text

    checked_in = await clinic.events("booking.appointment.checked_in.v1")
    assert [e["payload"]["appointment_id"] for e in checked_in] == [first, second]
    completed = await clinic.events("booking.infusion.completed.v1")
    assert [(e["payload"]["ordinal"], e["payload"]["family"]) for e in completed] == [
        (1, "mood"),
        (2, "mood"),
    ]
    assert completed[0]["payload"]["infusion_minutes"] == 55
    again = await clinic.client.post(f"/v1/appointments/{first}/complete", headers=clinic.clinician)
    clinic.assert_problem(again, 409, "invalid_state")
    by_patient = await clinic.client.post(
        f"/v1/appointments/{first}/complete", headers=clinic.patient(pid)
    )
    clinic.assert_problem(by_patient, 403)


async def test_a_no_show_is_marked_after_the_grace_period_and_charged_unless_waived(clinic):
    _, appointment_id = await _booked_maintenance(clinic)
    url = f"/v1/appointments/{appointment_id}/no-show"
    clinic.clock.set(START + timedelta(minutes=14, seconds=59))
    clinic.assert_problem(
        await clinic.client.post(url, headers=clinic.scheduler), 409, "too_early_for_no_show"
    )

    clinic.clock.set(START + timedelta(minutes=15))
    marked = await clinic.client.post(url, headers=clinic.scheduler)
    assert (marked.json()["status"], marked.json()["fee_cents"]) == ("no_show", 15000)
    [event] = await clinic.events("booking.appointment.no_show.v1")
    assert event["payload"]["fee_cents"] == 15000

    waived = await clinic.client.post(
        f"/v1/appointments/{appointment_id}/waive-fee",
        json={"reason": "car accident on the way"},
        headers=clinic.token("billing", "bill-1"),
    )
    assert (waived.json()["fee_cents"], waived.json()["fee_waived"]) == (0, True)
    [fee_event] = await clinic.events("booking.fee.waived.v1")
    assert fee_event["payload"]["fee_kind"] == "no_show"
    twice = await clinic.client.post(
        f"/v1/appointments/{appointment_id}/waive-fee",
        json={"reason": "again"},
        headers=clinic.scheduler,
    )
    clinic.assert_problem(twice, 409, "no_fee")


async def test_a_confirmed_ride_keeps_the_drivers_details_out_of_the_event(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    response = await clinic.client.post(
        f"/v1/appointments/{appointment_id}/ride",
        json={"confirmed": True, "driver_name": "Sam Driver", "driver_phone": "+15035550142"},
        headers=clinic.patient(pid),
    )
    assert response.status_code == 200, response.text
    assert response.json()["ride_confirmed"] is True
    [event] = await clinic.events("booking.ride.confirmed.v1")
    assert event["payload"]["confirmed"] is True
    assert "Sam" not in str(event) and "5550142" not in str(event)


async def test_notify_confirms_a_ride_the_patient_confirmed_by_text(clinic):
    pid, appointment_id = await _booked_maintenance(clinic)
    service = clinic.token("service", "notify")
    url = f"/internal/v1/appointments/{appointment_id}/ride"

    confirmed = await clinic.client.post(url, json={"patient_id": pid}, headers=service)

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"appointment_id": appointment_id, "ride_confirmed": True}
    assert (await clinic.appointment(appointment_id))["ride_confirmed"] is True
    [event] = await clinic.events("booking.ride.confirmed.v1")
    assert event["payload"]["confirmed"] is True
    # another patient's reply cannot confirm this ride; only services may call
    other = await clinic.client.post(url, json={"patient_id": str(uuid.uuid4())}, headers=service)
    clinic.assert_problem(other, 404)
    as_patient = await clinic.client.post(
        url, json={"patient_id": pid}, headers=clinic.patient(pid)
    )
    clinic.assert_problem(as_patient, 403)
    assert len(await clinic.events("booking.ride.confirmed.v1")) == 1


# Authorization


async def test_a_patient_reaches_only_their_own_records(clinic):
    owner, appointment_id = await _booked_maintenance(clinic)
    course_id = (await clinic.appointment(appointment_id))["course_id"]
    intruder = await clinic.register()
    headers = clinic.patient(intruder)

    reads = [
        await clinic.client.get(f"/v1/appointments/{appointment_id}", headers=headers),
        await clinic.client.get(f"/v1/courses/{course_id}", headers=headers),
        await clinic.client.get(f"/v1/patients/{owner}/intake", headers=headers),
        await clinic.client.get(f"/v1/patients/{owner}", headers=headers),
        await clinic.client.get("/v1/appointments", params={"patient_id": owner}, headers=headers),
        await clinic.client.get(
            "/v1/availability",
            params={"protocol": "maintenance", "patient_id": owner},
            headers=headers,
        ),
    ]
    writes = [
        await clinic.cancel(appointment_id, headers=headers),
        await clinic.client.post(
            f"/v1/appointments/{appointment_id}/reschedule",
            json={"start": "2026-12-01T09:00:00-08:00", "chair_id": "chair-1"},
            headers=headers,
        ),
        await clinic.client.post(
            f"/v1/appointments/{appointment_id}/ride", json={"confirmed": True}, headers=headers
        ),
        await clinic.book(owner, "maintenance", ["2026-12-02T09:00:00-08:00"], headers=headers),
        await clinic.client.put(
            f"/v1/patients/{owner}/intake",
            json={"condition": "mood", "screening": clinic.SCREENING_CLEAR},
            headers=headers,
        ),
    ]
    for response in reads + writes:
        body = clinic.assert_problem(response, 404)
        body.pop("instance", None)  # the path the intruder asked for, echoed back
        assert owner not in str(body) and appointment_id not in str(body)
        assert set(body) == {"type", "title", "status", "code", "detail"} or set(body) == {
            "type",
            "title",
            "status",
            "code",
        }
    assert (await clinic.appointment(appointment_id))["status"] == "booked"
    own = await clinic.client.get("/v1/appointments", headers=headers)
    assert own.json()["appointments"] == []

    staff_only = [
        ("post", f"/v1/appointments/{appointment_id}/check-in"),
        ("post", f"/v1/appointments/{appointment_id}/no-show"),
        ("post", f"/v1/appointments/{appointment_id}/complete"),
        ("get", "/v1/holds"),
        ("get", f"/internal/v1/patients/{intruder}"),
        ("get", "/internal/v1/clinic"),
    ]
    for method, url in staff_only:
        clinic.assert_problem(await clinic.client.request(method, url, headers=headers), 403)


async def test_the_internal_api_gives_services_contact_details_and_medication_classes(clinic):
    pid = await clinic.cleared_patient()
    service = clinic.token("service", "notify")

    contact = await clinic.client.get(f"/internal/v1/patients/{pid}", headers=service)
    provider = await clinic.client.get("/internal/v1/clinic", headers=service)

    assert contact.status_code == 200, contact.text
    assert contact.json()["medication_classes"] == ["other"]
    assert contact.json()["diagnosis_codes"] == ["F33.2"]
    assert contact.json()["phone"] == "+15035550123"
    assert provider.json()["providers"][0]["npi"]
    scheduler = await clinic.client.get(f"/internal/v1/patients/{pid}", headers=clinic.scheduler)
    clinic.assert_problem(scheduler, 403)


async def test_no_event_carries_names_contact_data_or_health_details(clinic):
    pid = await clinic.cleared_patient()
    profile = (await clinic.client.get(f"/v1/patients/{pid}", headers=clinic.scheduler)).json()
    course = (await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)).json()
    first, second, *_ = (a["id"] for a in course["appointments"])
    await clinic.client.post(
        f"/v1/appointments/{second}/ride",
        json={"confirmed": True, "driver_name": "Robin Driver", "driver_phone": "+15035550166"},
        headers=clinic.patient(pid),
    )
    await clinic.cancel(first, reason="panic attack, feeling unwell", headers=clinic.patient(pid))

    events = await clinic.events()
    assert len(events) > 10
    text = str([(e["payload"], e["message_key"]) for e in events]).lower()
    for personal in (
        profile["last_name"],
        profile["email"],
        "5550123",
        profile["date_of_birth"],
        "f33.2",
        "sertraline",
        "panic",
        "robin",
        "5550166",
        "screening",
        "psychosis",
    ):
        assert personal.lower() not in text, personal

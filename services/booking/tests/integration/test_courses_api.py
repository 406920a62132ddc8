"""Booking whole courses over HTTP: intake gate, course rules, chairs never double-booked.

Runs on SQLite and PostgreSQL (the `db_backend` parameter).
"""

from __future__ import annotations

from datetime import datetime, timedelta


async def test_protocols_list_every_protocol_with_its_chair_time_and_course_rule(clinic):
    pid = await clinic.register()
    response = await clinic.client.get("/v1/protocols", headers=clinic.patient(pid))

    assert response.status_code == 200
    body = response.json()
    protocols = {p["name"]: p for p in body["protocols"]}
    assert set(protocols) >= {
        "phone_consult",
        "info_consult",
        "mood_induction",
        "pain_induction",
        "mood_booster",
        "pain_booster",
        "maintenance",
    }
    assert protocols["pain_induction"]["infusion_minutes"] == 240
    assert protocols["mood_induction"]["course"]["count"] == 6
    assert body["zone"] == "America/Los_Angeles"
    assert body["first_visit_minutes"] == 150


async def test_an_induction_course_cannot_be_booked_before_the_intake_is_cleared(clinic):
    pid = await clinic.register()
    assert (await clinic.submit_intake(pid)).status_code == 200

    response = await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)

    clinic.assert_problem(response, 409, "intake_not_cleared")
    assert await clinic.live_occupancies() == []
    assert await clinic.events("booking.course.booked.v1") == []


async def test_a_blocking_screening_flag_needs_a_clinicians_override_with_a_reason(clinic):
    pid = await clinic.register()
    assert (await clinic.submit_intake(pid, seizure_disorder=True)).status_code == 200
    url = f"/v1/patients/{pid}/intake/clearance"

    refused = await clinic.client.post(
        url, json={"diagnosis_confirmed": True}, headers=clinic.clinician
    )
    clinic.assert_problem(refused, 409, "blocking_flags")
    by_patient = await clinic.client.post(
        url, json={"diagnosis_confirmed": True}, headers=clinic.patient(pid)
    )
    clinic.assert_problem(by_patient, 403)

    cleared = await clinic.client.post(
        url,
        json={"diagnosis_confirmed": True, "override_reason": "controlled, neurology letter"},
        headers=clinic.clinician,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["status"] == "cleared"
    assert cleared.json()["blocking_flags"] == ["seizure_disorder"]
    [event] = await clinic.events("booking.intake.cleared.v1")
    assert set(event["payload"]) == {"patient_id", "cleared_at"}
    assert (await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)).status_code == 201


async def test_changing_the_screening_answers_withdraws_the_clearance(clinic):
    pid = await clinic.cleared_patient()
    assert (await clinic.submit_intake(pid, psychosis=True)).status_code == 200

    intake = await clinic.client.get(f"/v1/patients/{pid}/intake", headers=clinic.clinician)
    assert intake.json()["status"] == "pending"
    clinic.assert_problem(
        await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE), 409, "intake_not_cleared"
    )


async def test_an_intake_missing_a_screening_answer_is_rejected(clinic):
    pid = await clinic.register()
    response = await clinic.client.put(
        f"/v1/patients/{pid}/intake",
        json={"condition": "mood", "screening": {"psychosis": False}},
        headers=clinic.patient(pid),
    )
    body = clinic.assert_problem(response, 422, "screening_incomplete")
    assert "seizure_disorder" in body["unanswered"]


async def test_a_mood_course_books_six_appointments_at_once_with_a_longer_first_visit(clinic):
    pid = await clinic.cleared_patient()

    response = await clinic.book(pid, "mood_induction", clinic.MOOD_COURSE)

    assert response.status_code == 201, response.text
    course = response.json()
    appointments = course["appointments"]
    assert [a["sequence"] for a in appointments] == [1, 2, 3, 4, 5, 6]
    assert all(a["status"] == "booked" for a in appointments)
    lengths = [
        datetime.fromisoformat(a["end"]) - datetime.fromisoformat(a["start"]) for a in appointments
    ]
    assert lengths[0] == timedelta(minutes=150)
    assert set(lengths[1:]) == {timedelta(minutes=90)}
    [booked] = await clinic.events("booking.course.booked.v1")
    assert booked["message_key"] == course["id"]
    assert len(booked["payload"]["slots"]) == 6
    per_appointment = await clinic.events("booking.appointment.booked.v1")
    assert {e["payload"]["appointment_id"] for e in per_appointment} == {
        a["id"] for a in appointments
    }
    fetched = await clinic.client.get(f"/v1/courses/{course['id']}", headers=clinic.patient(pid))
    assert fetched.json()["appointments"] == appointments


async def test_course_rules_refuse_with_the_reason_and_book_nothing(clinic):
    mood = await clinic.cleared_patient()
    pain = await clinic.cleared_patient("pain")
    consecutive = [*clinic.MOOD_COURSE[:5], "2026-12-03T09:00:00-08:00"]
    too_spread = [*clinic.MOOD_COURSE[:5], "2026-12-14T09:00:00-08:00"]
    pain_times_differ = [
        "2026-11-23T08:00:00-08:00",
        "2026-11-24T08:00:00-08:00",
        "2026-11-25T08:30:00-08:00",
        "2026-11-26T08:00:00-08:00",
        "2026-11-27T08:00:00-08:00",
    ]
    cases = [
        (mood, "mood_induction", consecutive, "gap_too_short"),
        (mood, "mood_induction", too_spread, "window_exceeded"),
        (mood, "mood_induction", clinic.MOOD_COURSE[:5], "wrong_slot_count"),
        (pain, "pain_induction", pain_times_differ, "start_times_differ"),
        (mood, "maintenance", ["2026-11-23T17:00:00-08:00"], "outside_opening_hours"),
        (mood, "maintenance", ["2026-11-22T10:00:00-08:00"], "outside_opening_hours"),
        (mood, "maintenance", ["2026-11-19T10:00:00-08:00"], "slot_in_past"),
        (
            mood,
            "mood_booster",
            ["2026-11-23T09:00:00-08:00", "2026-11-26T09:00:00-08:00"],
            "gap_too_long",
        ),
    ]
    for patient, protocol, starts, code in cases:
        response = await clinic.book(patient, protocol, starts)
        clinic.assert_problem(response, 409, code)

    assert await clinic.live_occupancies() == []
    assert await clinic.events("booking.course.booked.v1") == []


async def test_every_protocol_books_when_its_rule_is_met(clinic):
    mood = await clinic.cleared_patient()
    pain = await clinic.cleared_patient("pain")
    five_days = [f"2026-11-{day}T08:00:00-08:00" for day in (23, 24, 25, 26, 27)]
    cases = [
        (pain, "pain_induction", five_days, "chair-2", 330),
        (mood, "mood_induction", clinic.MOOD_COURSE, "chair-1", 90),
        (
            mood,
            "mood_booster",
            ["2026-12-07T09:00:00-08:00", "2026-12-09T09:00:00-08:00"],
            "chair-3",
            90,
        ),
        (
            pain,
            "pain_booster",
            ["2026-12-07T08:00:00-08:00", "2026-12-10T08:00:00-08:00"],
            "chair-4",
            330,
        ),
        (pain, "maintenance", ["2026-12-14T08:00:00-08:00"], "chair-2", 330),
        (mood, "maintenance", ["2026-12-14T14:00:00-08:00"], "chair-1", 90),
        (mood, "info_consult", ["2026-11-23T12:00:00-08:00"], "office-1", 30),
        (mood, "phone_consult", ["2026-11-23T13:00:00-08:00"], "clinician-1", 30),
    ]
    for patient, protocol, starts, chair, minutes in cases:
        response = await clinic.book(patient, protocol, starts, chair)
        assert response.status_code == 201, (protocol, response.text)
        last = response.json()["appointments"][-1]
        length = datetime.fromisoformat(last["end"]) - datetime.fromisoformat(last["start"])
        assert length == timedelta(minutes=minutes), protocol

    clinic.assert_no_overlap(await clinic.live_occupancies())


async def test_a_taken_slot_is_a_409_and_the_whole_course_stays_unbooked(clinic):
    first = await clinic.cleared_patient()
    second = await clinic.cleared_patient()
    assert (await clinic.book(first, "maintenance", [clinic.MOOD_COURSE[3]])).status_code == 201

    # Five of six slots are free; one overlaps the maintenance infusion on chair-1.
    response = await clinic.book(second, "mood_induction", clinic.MOOD_COURSE)

    clinic.assert_problem(response, 409, "slot_taken")
    assert len(await clinic.live_occupancies()) == 1
    listed = await clinic.client.get(
        "/v1/appointments", params={"patient_id": second}, headers=clinic.scheduler
    )
    assert listed.json()["appointments"] == []


async def test_a_patient_cannot_sit_in_two_chairs_at_once(clinic):
    pid = await clinic.cleared_patient()
    assert (await clinic.book(pid, "maintenance", [clinic.MOOD_COURSE[0]])).status_code == 201

    response = await clinic.book(pid, "maintenance", [clinic.MOOD_COURSE[0]], "chair-2")

    clinic.assert_problem(response, 409, "patient_double_booked")


async def test_a_local_time_without_offset_that_does_not_exist_or_is_ambiguous_is_422(clinic):
    pid = await clinic.cleared_patient()
    clinic.clock.set(datetime.fromisoformat("2026-02-20T12:00:00+00:00"))
    # 2026-03-08 02:30 does not exist in Portland (spring forward); as does nothing else
    # the clinic opens at, so the check must come before any opening-hours rule.
    gap = await clinic.book(pid, "maintenance", ["2026-03-08T02:30:00"])
    clinic.assert_problem(gap, 422, "nonexistent_local_time")
    fold = await clinic.book(pid, "maintenance", ["2026-11-01T01:30:00"])
    clinic.assert_problem(fold, 422, "ambiguous_local_time")

    local = await clinic.book(pid, "maintenance", ["2026-03-09T09:00:00"])
    assert local.status_code == 201, local.text
    assert local.json()["appointments"][0]["start"].startswith("2026-03-09T16:00:00")


async def test_availability_offers_whole_courses_that_book_as_offered(clinic):
    pid = await clinic.cleared_patient()
    response = await clinic.client.get(
        "/v1/availability",
        params={"protocol": "mood_induction", "patient_id": pid, "limit": 3},
        headers=clinic.patient(pid),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["first_visit"] is True
    assert 1 <= len(body["options"]) <= 3
    option = body["options"][0]
    assert len(option["slots"]) == 6

    booked = await clinic.book(
        pid,
        "mood_induction",
        [s["start"] for s in option["slots"]],
        [s["chair_id"] for s in option["slots"]],
        headers=clinic.patient(pid),
    )
    assert booked.status_code == 201, booked.text

    again = await clinic.client.get(
        "/v1/availability",
        params={"protocol": "mood_induction", "patient_id": pid, "limit": 3},
        headers=clinic.scheduler,
    )
    assert option not in again.json()["options"]
    assert again.json()["first_visit"] is False


async def test_availability_refuses_bad_windows_and_unknown_protocols(clinic):
    pid = await clinic.cleared_patient()
    base = {"patient_id": pid}
    unknown = await clinic.client.get(
        "/v1/availability", params=base | {"protocol": "yoga"}, headers=clinic.scheduler
    )
    clinic.assert_problem(unknown, 422, "unknown_protocol")
    backwards = await clinic.client.get(
        "/v1/availability",
        params=base
        | {"protocol": "maintenance", "from": "2026-12-10T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=clinic.scheduler,
    )
    clinic.assert_problem(backwards, 422, "invalid_window")


async def test_the_same_idempotency_key_books_once(clinic):
    pid = await clinic.cleared_patient()
    body = {
        "patient_id": pid,
        "protocol": "maintenance",
        "slots": [{"start": clinic.MOOD_COURSE[0], "chair_id": "chair-1"}],
    }
    headers = clinic.scheduler | {"Idempotency-Key": "course-1"}

    first = await clinic.client.post("/v1/courses", json=body, headers=headers)
    second = await clinic.client.post("/v1/courses", json=body, headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(await clinic.events("booking.course.booked.v1")) == 1


async def test_availability_options_differ_in_their_times_not_only_their_chairs(clinic):
    pid = await clinic.cleared_patient()
    response = await clinic.client.get(
        "/v1/availability",
        params={"protocol": "maintenance", "patient_id": pid, "limit": 5},
        headers=clinic.scheduler,
    )

    options = response.json()["options"]
    assert len(options) == 5
    starts = [tuple(s["start"] for s in option["slots"]) for option in options]
    assert len(set(starts)) == 5
    assert starts == sorted(starts)

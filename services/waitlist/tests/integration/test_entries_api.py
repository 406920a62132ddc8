"""Entries: joining, the ordered queue, a scheduler's edits, leaving, and who may do what."""

from __future__ import annotations

import uuid


async def test_a_patient_joins_for_themselves_and_the_queue_orders_urgent_first_then_by_time(desk):
    first, second, urgent = desk.new_patient(), desk.new_patient(), desk.new_patient()
    own = await desk.join(first, headers=desk.patient(first))
    assert own.status_code == 201, own.text
    body = own.json()
    assert body["status"] == "active" and body["priority"] == "routine"
    assert body["family"] == "mood"
    desk.clock.advance(desk.NOW - desk.NOW.replace(minute=0))
    await desk.waiting(second)
    await desk.waiting(urgent, priority="urgent")

    queue = (await desk.client.get("/v1/entries", headers=desk.scheduler)).json()["entries"]
    assert [e["patient_id"] for e in queue] == [urgent, first, second]
    assert [e["position"] for e in queue] == [1, 2, 3]


async def test_a_scheduler_reorders_pauses_and_edits_an_entry(desk):
    a, b, c = desk.new_patient(), desk.new_patient(), desk.new_patient()
    ids = [await desk.waiting(p) for p in (a, b, c)]
    moved = await desk.client.patch(
        f"/v1/entries/{ids[2]}", json={"position": 1}, headers=desk.scheduler
    )
    assert moved.status_code == 200, moved.text
    queue = (await desk.client.get("/v1/entries", headers=desk.scheduler)).json()["entries"]
    assert [e["id"] for e in queue] == [ids[2], ids[0], ids[1]]

    paused = await desk.client.patch(
        f"/v1/entries/{ids[0]}",
        json={"paused": True, "preferences": {"weekdays": ["mon"], "windows": []}},
        headers=desk.scheduler,
    )
    assert paused.json()["status"] == "paused"
    assert paused.json()["preferences"]["weekdays"] == ["mon"]
    middle = await desk.client.patch(
        f"/v1/entries/{ids[0]}", json={"position": 2}, headers=desk.scheduler
    )
    assert middle.status_code == 200
    queue = (await desk.client.get("/v1/entries", headers=desk.scheduler)).json()["entries"]
    assert [e["id"] for e in queue] == [ids[2], ids[0], ids[1]]


async def test_a_patient_may_not_set_urgent_nor_touch_anothers_entries(desk):
    mine, theirs = desk.new_patient(), desk.new_patient()
    desk.assert_problem(
        await desk.join(mine, priority="urgent", headers=desk.patient(mine)), 403, "forbidden"
    )
    desk.assert_problem(await desk.join(theirs, headers=desk.patient(mine)), 404, "not_found")
    their_entry = await desk.waiting(theirs)
    for response in (
        await desk.client.get(f"/v1/entries/{their_entry}", headers=desk.patient(mine)),
        await desk.client.delete(f"/v1/entries/{their_entry}", headers=desk.patient(mine)),
        await desk.client.get(f"/v1/entries/{their_entry}/offers", headers=desk.patient(mine)),
    ):
        desk.assert_problem(response, 404, "not_found")
    desk.assert_problem(
        await desk.client.patch(
            f"/v1/entries/{their_entry}", json={"priority": "urgent"}, headers=desk.patient(mine)
        ),
        403,
    )
    own = (await desk.client.get("/v1/entries", headers=desk.patient(mine))).json()["entries"]
    assert own == []
    still = await desk.client.get(f"/v1/entries/{their_entry}", headers=desk.scheduler)
    assert still.json()["status"] == "active" and still.json()["priority"] == "routine"


async def test_a_patient_sees_and_removes_their_own_entry(desk):
    patient = desk.new_patient()
    entry_id = await desk.waiting(patient, headers=desk.patient(patient))
    listed = (await desk.client.get("/v1/entries", headers=desk.patient(patient))).json()
    assert [e["id"] for e in listed["entries"]] == [entry_id]
    removed = await desk.client.delete(f"/v1/entries/{entry_id}", headers=desk.patient(patient))
    assert removed.status_code == 204
    queue = (await desk.client.get("/v1/entries", headers=desk.scheduler)).json()["entries"]
    assert queue == []
    again = await desk.client.get(f"/v1/entries/{entry_id}", headers=desk.patient(patient))
    assert again.json()["status"] == "removed"


async def test_bad_entries_are_refused_and_change_nothing(desk):
    patient = desk.new_patient(condition=None)
    cases = [
        (await desk.join(patient, "info_consult"), 422, "unknown_protocol"),
        (await desk.join(patient, "no_such_protocol"), 422, "unknown_protocol"),
        (await desk.join(str(uuid.uuid4())), 404, "not_found"),
        (await desk.join(patient, "maintenance"), 409, "condition_unknown"),
        (await desk.join(patient, weekdays=["someday"]), 422, None),
        (await desk.join(patient, windows=[("12:00", "09:00")]), 422, None),
    ]
    for response, status, code in cases:
        desk.assert_problem(response, status, code)
    await desk.waiting(patient)
    desk.assert_problem(await desk.join(patient), 409, "already_waitlisted")
    queue = (await desk.client.get("/v1/entries", headers=desk.scheduler)).json()["entries"]
    assert len(queue) == 1


async def test_a_maintenance_entry_waits_in_the_family_of_the_patients_condition(desk):
    patient = desk.new_patient(condition="pain")
    response = await desk.join(patient, "maintenance")
    assert response.status_code == 201, response.text
    assert response.json()["family"] == "pain"

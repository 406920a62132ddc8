"""Mass assignment: what a patient may not set is refused, never taken.

Every write a patient may make (every operation with a JSON body the OpenAPI documents admit
patients to) is sent by patient A with a field the body does not have (a status, a price, an
id, a priority, who registered or cleared them ...): the answer is a 422 naming that field, and
nothing of A's changes. The fields a body has but only staff may use (an urgent priority, an
agreed amount to finance, a waived fee, another patient) are refused with 403 or 404. A slot's
`end`, accepted so that an availability option can be posted back, is ignored."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from clinic_shared.auth import Role

PROBLEM = "application/problem+json"
# What a patient might try to set on their own records.
SMUGGLED = {
    "id": str(uuid.UUID(int=7)),
    "status": "completed",
    "patient_id": str(uuid.UUID(int=8)),
    "priority": "urgent",
    "price_cents": 0,
    "amount_cents": 1,
    "fee_cents": 0,
    "fee_waived": True,
    "charge_id": str(uuid.UUID(int=9)),
    "role": "admin",
    "registered_by": "staff",
    "cleared_by": "clinician-1",
    "is_default": True,
    "created_at": "2020-01-01T00:00:00Z",
}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] == code, body
    return dict(body)


def patients_writes(clinic: Any) -> list[Any]:
    return [
        operation
        for operation in clinic.operations()
        if operation.roles
        and Role.PATIENT in operation.roles
        and operation.method != "GET"
        and operation.body_fields
    ]


async def test_a_field_a_patients_write_does_not_have_is_refused_and_changes_nothing(clinic, world):
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    before = await clinic.records_of_a(world)
    writes = patients_writes(clinic)
    assert len(writes) >= 8, [op.label for op in writes]  # the documents name them all
    taken = []
    for operation in writes:
        body = operation.request(world)["json"]
        for field, value in SMUGGLED.items():
            if field in operation.body_fields:
                continue
            response = await clinic.send(world, operation, as_a, json=body | {field: value})
            refused = response.status_code == 422 and any(
                error["loc"] == ["body", field] for error in response.json().get("errors", [])
            )
            if not refused:
                taken.append(f"{operation.label} {field}: {response.status_code}")
    assert not taken, "\n".join(taken)
    assert await clinic.records_of_a(world) == before


async def test_a_patient_cannot_write_for_another_patient(clinic, world):
    """Every body that names a patient, sent by A for B: 404, as for a patient who does not
    exist, and nothing is created for either."""
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    before = await clinic.records_of_a(world)
    naming = [op for op in patients_writes(clinic) if "patient_id" in op.body_fields]
    assert {op.label for op in naming} >= {
        "booking POST /v1/courses",
        "waitlist POST /v1/entries",
        "billing POST /v1/financing-plans",
    }
    for operation in naming:
        body = operation.request(world)["json"] | {"patient_id": world.b.id}
        response = await clinic.send(world, operation, as_a, json=body)
        assert_problem(response, 404, "not_found")
    as_b = world.signed_in(Role.PATIENT, world.b.id)
    assert (await clinic.ok("booking", "GET", "/v1/appointments", as_b)) == {"appointments": []}
    assert (await clinic.ok("waitlist", "GET", "/v1/entries", as_b)) == {"entries": []}
    assert await clinic.ok("billing", "GET", f"/v1/patients/{world.b.id}/charges", as_b) == []
    assert await clinic.records_of_a(world) == before


async def test_a_patient_cannot_make_their_own_waitlist_entry_urgent(clinic, world):
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    entries = await clinic.ok("waitlist", "GET", "/v1/entries", as_a)
    join = {
        "patient_id": world.a.id,
        "protocol": "mood_booster",
        "earliest_start": "2026-12-01",
        "priority": "urgent",
    }
    response = await clinic.call("waitlist", "POST", "/v1/entries", as_a, json=join)
    assert_problem(response, 403, "forbidden")
    assert await clinic.ok("waitlist", "GET", "/v1/entries", as_a) == entries
    edit = await clinic.call(
        "waitlist",
        "PATCH",
        f"/v1/entries/{world.ids['entry_id']}",
        as_a,
        json={"priority": "urgent"},
    )
    assert_problem(edit, 403, "forbidden")
    entry = await clinic.ok("waitlist", "GET", f"/v1/entries/{world.ids['entry_id']}", as_a)
    assert entry["priority"] == "routine"


async def test_a_patient_cannot_finance_an_amount_of_their_choosing(clinic, world):
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    plan = {"patient_id": world.a.id, "amount_cents": 1, "installments": 12}
    response = await clinic.call("billing", "POST", "/v1/financing-plans", as_a, json=plan)
    assert_problem(response, 403, "forbidden")
    plans = await clinic.ok("billing", "GET", "/v1/financing-plans", world.signed_in(Role.BILLING))
    assert [p["id"] for p in plans if p["patient_id"] == world.a.id] == [world.ids["plan_id"]]


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
async def test_a_patient_cannot_waive_their_own_fee(clinic, world, change):
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    appointment = f"/v1/appointments/{world.ids['appointment_id']}"
    before = await clinic.ok("booking", "GET", appointment, as_a)
    body: dict[str, Any] = {"acknowledge_late_fee": True, "waive_fee_reason": "I say so"}
    if change == "reschedule":
        body |= {"start": "2026-12-09T13:00:00-08:00", "chair_id": "chair-4"}
    response = await clinic.call("booking", "POST", f"{appointment}/{change}", as_a, json=body)
    assert_problem(response, 403, "forbidden")
    assert await clinic.ok("booking", "GET", appointment, as_a) == before


async def test_the_end_a_patient_sends_with_a_slot_is_ignored_the_protocol_sets_it(clinic, world):
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    start = datetime.fromisoformat("2026-12-08T13:00:00-08:00")
    course = await clinic.ok(
        "booking",
        "POST",
        "/v1/courses",
        as_a,
        json={
            "patient_id": world.a.id,
            "protocol": "maintenance",
            "slots": [
                {
                    "start": start.isoformat(),
                    "end": (start + timedelta(hours=9)).isoformat(),
                    "chair_id": "chair-4",
                }
            ],
        },
    )
    protocols = await clinic.ok("booking", "GET", "/v1/protocols", as_a)
    mood = next(p for p in protocols["protocols"] if p["name"] == "mood_induction")
    (booked,) = course["appointments"]
    chair_time = datetime.fromisoformat(booked["end"]) - datetime.fromisoformat(booked["start"])
    assert datetime.fromisoformat(booked["start"]) == start
    # A's intake names mood: a maintenance infusion takes a mood infusion's chair time.
    assert chair_time == timedelta(minutes=mood["infusion_minutes"] + mood["recovery_minutes"])

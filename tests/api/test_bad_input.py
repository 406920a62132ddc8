"""What the fuzzing found, pinned: each kind of bad input it showed answered with a 5xx, taken as
something else, or answered out of the document, is now a 4xx problem that changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from clinic_shared.auth import Role

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] == code, body
    return dict(body)


def registration(**changes: Any) -> dict[str, Any]:
    return {
        "first_name": "Dana",
        "last_name": "Newcomer",
        "date_of_birth": "1988-02-29",
        "email": "dana@example.org",
        "phone": "+15035550188",
    } | changes


async def test_a_nul_character_in_a_query_or_a_body_is_refused_and_stores_nothing(clinic, world):
    """PostgreSQL cannot store NUL in text: it answered 500."""
    scheduler = world.signed_in(Role.SCHEDULER)
    listed = await clinic.call("waitlist", "GET", "/v1/entries", scheduler, params="protocol=%00")
    assert_problem(listed, 422, "invalid_text")
    newcomer = str(uuid.uuid4())
    as_newcomer = world.signed_in(Role.PATIENT, newcomer)
    registered = await clinic.call(
        "booking", "POST", "/v1/patients", as_newcomer, json=registration(first_name="Da\x00na")
    )
    assert_problem(registered, 422, "invalid_text")
    found = await clinic.call("booking", "GET", f"/v1/patients/{newcomer}", scheduler)
    assert_problem(found, 404, "not_found")


async def test_a_date_or_a_time_written_as_a_number_is_refused(clinic, world):
    """Pydantic read 0 as 1970-01-01 and 0.5 as half a second past 1970."""
    newcomer = str(uuid.uuid4())
    registered = await clinic.call(
        "booking",
        "POST",
        "/v1/patients",
        world.signed_in(Role.PATIENT, newcomer),
        json=registration(date_of_birth=0),
    )
    problem = assert_problem(registered, 422, "validation_error")
    assert [e["loc"] for e in problem["errors"]] == [["body", "date_of_birth"]]
    scheduler = world.signed_in(Role.SCHEDULER)
    found = await clinic.call("booking", "GET", f"/v1/patients/{newcomer}", scheduler)
    assert_problem(found, 404, "not_found")
    for service, path in (("booking", "/v1/appointments"), ("waitlist", "/v1/figures")):
        listed = await clinic.call(service, "GET", path, scheduler, params={"to": "0.5"})
        assert_problem(listed, 422, "validation_error")


async def test_a_yes_or_no_written_as_a_number_is_refused_and_changes_nothing(clinic, world):
    """Pydantic read 0 as false: a clearance or a ride answered with a number was taken."""
    appointment = f"/v1/appointments/{world.ids['appointment_id']}"
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    before = await clinic.ok("booking", "GET", appointment, as_a)
    ride = await clinic.call("booking", "POST", f"{appointment}/ride", as_a, json={"confirmed": 1})
    assert_problem(ride, 422, "validation_error")
    cleared = await clinic.call(
        "booking",
        "POST",
        f"/v1/patients/{world.a.id}/intake/clearance",
        world.signed_in(Role.CLINICIAN),
        json={"diagnosis_confirmed": 1},
    )
    assert_problem(cleared, 422, "validation_error")
    assert await clinic.ok("booking", "GET", appointment, as_a) == before


async def test_a_method_a_path_does_not_serve_names_every_method_it_does(clinic, world):
    """Starlette named only the first route's methods (PUT for the intake, not GET)."""
    scheduler = world.signed_in(Role.SCHEDULER)
    for service, path, allowed in (
        ("booking", f"/v1/patients/{world.a.id}/intake", "GET, PUT"),
        ("waitlist", f"/v1/entries/{world.ids['entry_id']}", "GET, PATCH, DELETE"),
        ("notify", f"/v1/patients/{world.a.id}/preferences", "GET, PUT"),
    ):
        response = await clinic.call(service, "OPTIONS", path, scheduler)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed


async def test_a_signed_processor_event_that_is_not_an_event_is_refused_not_a_server_error(
    clinic, world
):
    """`data` that is not an object raised AttributeError; an id longer than its column made
    PostgreSQL refuse the insert. Both answered 500."""
    signed = clinic.apps.signed_by_providers()["billing"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=signed), base_url="http://test"
    ) as processor:
        for event in (
            {"id": "evt_1", "type": "charge.dispute.created", "data": [1]},
            {"id": "evt_1", "type": "charge.dispute.created", "data": {"object": "x"}},
            {"id": "e" * 256, "type": "charge.dispute.created", "data": {"object": {}}},
        ):
            response = await processor.post("/v1/webhooks/processor", json=event)
            assert_problem(response, 422, "malformed_webhook")
        known = {"id": "evt_2", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
        response = await processor.post("/v1/webhooks/processor", json=known)
        assert response.json() == {"received": True, "applied": True}


async def test_quiet_hours_are_whole_minutes(clinic, world):
    """10:00:01 to 10:00 was stored as 10:00 to 10:00, which then failed to read: 500."""
    preferences = f"/v1/patients/{world.a.id}/preferences"
    as_a = world.signed_in(Role.PATIENT, world.a.id)
    before = await clinic.ok("notify", "GET", preferences, as_a)
    response = await clinic.call(
        "notify",
        "PUT",
        preferences,
        as_a,
        json={"channels": ["sms"], "quiet_hours": {"start": "10:00:01", "end": "10:00"}},
    )
    assert_problem(response, 422, "validation_error")
    assert await clinic.ok("notify", "GET", preferences, as_a) == before


async def test_a_correlation_id_that_is_not_a_plain_token_is_replaced(clinic, world):
    """It travels into logs, event headers and the outbox; bytes that are not UTF-8 made the
    request middleware fail before any handler could answer."""
    scheduler = world.signed_in(Role.SCHEDULER)
    for odd in (b"caf\xe9", b"new\nline", b"x" * 65):
        response = await clinic.call(
            "booking", "GET", "/v1/protocols", scheduler | {"X-Correlation-ID": odd}
        )
        assert response.status_code == 200
        assert uuid.UUID(response.headers["x-correlation-id"])
    kept = await clinic.call(
        "booking", "GET", "/v1/protocols", scheduler | {"X-Correlation-ID": "front-end:42"}
    )
    assert kept.headers["x-correlation-id"] == "front-end:42"


async def test_a_signed_text_reply_with_a_nul_character_is_refused_not_a_server_error(
    clinic, world
):
    """A form field with %00 reached PostgreSQL as text it cannot store: 500."""
    signed = clinic.apps.signed_by_providers()["notify"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=signed), base_url="http://test"
    ) as provider:
        for form in (
            {"MessageSid": "SM\x00", "From": world.a.phone, "Body": "YES"},
            {"MessageSid": "SM1", "From": world.a.phone, "Body": "YES\x00"},
        ):
            response = await provider.post("/v1/inbound/sms", data=form)
            assert_problem(response, 400, "malformed_webhook")


async def test_a_settlement_report_with_a_nul_character_is_refused_and_stores_nothing(
    clinic, world
):
    billing = world.signed_in(Role.BILLING) | {"Content-Type": "text/csv"}
    header = (
        "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
        "source_id,payment_intent_id\n"
    )
    line = "txn_\x00,2026-11-20 17:10:00,usd,600.00,17.70,582.30,charge,ch_1,pi_\x00\n"
    response = await clinic.call(
        "billing", "POST", "/v1/reconciliation/settlements", billing, content=header + line
    )
    assert_problem(response, 422, "invalid_settlement_report")

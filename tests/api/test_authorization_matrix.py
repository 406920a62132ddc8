"""The authorization matrix, generated from the four services' OpenAPI documents.

Each document names, per operation, the roles that may call it (the `bearer` security
requirement). Every operation is called with patient A's ids: by patient B (another patient's
id answers 404, an operation patients may not call 403, and no answer carries anything of A's),
by every role (the roles the document admits get past authorization, every other role gets
403), and without a valid token (401). Then the documents are held against API.md's tables."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from clinic_shared.auth import Role, issue_token

PROBLEM = "application/problem+json"
STAFF = [role for role in Role if role is not Role.PATIENT]
# A list filtered by another patient's id answers an empty list here, where booking's lists (and
# API.md) answer 404. Nothing leaks either way; the waitlist's own tests pin the empty list.
FILTERS_ANSWERING_EMPTY = {"waitlist GET /v1/offers"}


def leaked(response: httpx.Response, world: Any, operation: Any) -> list[str]:
    """What of patient A's the answer carries, beyond the ids the request itself named."""
    named = str(operation.request(world))
    return [
        secret for secret in world.secrets_of_a() if secret in response.text and secret not in named
    ]


def is_problem(response: httpx.Response, status: int, code: str) -> bool:
    return (
        response.status_code == status
        and response.headers.get("content-type", "").startswith(PROBLEM)
        and response.json()["code"] == code
    )


async def test_another_patients_ids_answer_404_and_nothing_of_theirs_ever_reaches_a_patient(
    clinic, world
):
    """Patient B calls every operation with A's ids: an operation patients may call answers 404
    (as for a record that does not exist), any other 403; no answer to B, whether or not it
    names A's records, carries anything of A's; and A's records read the same afterwards."""
    before = await clinic.records_of_a(world)
    as_b = world.signed_in(Role.PATIENT, world.b.id)
    wrong = []
    for operation in clinic.operations():
        if operation.roles is None:
            continue
        response = await clinic.send(world, operation, as_b)
        if Role.PATIENT not in operation.roles:
            expected = is_problem(response, 403, "forbidden")
        elif operation.label in FILTERS_ANSWERING_EMPTY:
            expected = response.status_code == 200 and response.json() == {"offers": []}
        elif operation.names_a_record(world):
            expected = is_problem(response, 404, "not_found")
        else:
            expected = response.status_code < 500
        if not expected or leaked(response, world, operation):
            wrong.append(f"{operation.label}: {response.status_code} {response.text[:300]}")
    assert not wrong, "\n".join(wrong)
    assert await clinic.records_of_a(world) == before


async def test_each_role_gets_past_exactly_the_operations_its_document_admits(clinic, world):
    """Every role (patient A for themself) against every operation: a role the document admits
    is never refused with 401 or 403, nor answered with a 5xx (reads answer 200); every other
    role gets a 403 problem that carries nothing of A's. Refusals run first: they change
    nothing the admitted calls then use."""
    callers = {"patient A": (Role.PATIENT, world.signed_in(Role.PATIENT, world.a.id))}
    callers |= {role.value: (role, world.signed_in(role)) for role in STAFF}
    gated = [op for op in clinic.operations() if op.roles is not None]
    wrong = []
    for admitted_pass in (False, True):
        for operation in gated:
            for who, (role, headers) in callers.items():
                if (role in operation.roles) is not admitted_pass:
                    continue
                response = await clinic.send(world, operation, headers)
                if admitted_pass:
                    good = response.status_code not in (401, 403) and response.status_code < 500
                    if operation.method == "GET":
                        good = response.status_code == 200
                else:
                    good = is_problem(response, 403, "forbidden") and not leaked(
                        response, world, operation
                    )
                if not good:
                    wrong.append(
                        f"{who} {operation.label}: {response.status_code} {response.text[:300]}"
                    )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer not-a-token",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.forged",
        f"Bearer {issue_token('a-secret-that-is-not-the-clinics-0123456789', Role.ADMIN)}",
    ],
    ids=["no token", "not a bearer token", "not a JWT", "forged", "signed with another key"],
)
async def test_every_gated_operation_answers_401_without_a_valid_token(
    clinic, world, authorization
):
    headers = {"Authorization": authorization} if authorization else {}
    wrong = []
    for operation in clinic.operations():
        if operation.roles is None:
            continue
        response = await clinic.send(world, operation, headers)
        if response.status_code != 401 or not response.headers["content-type"].startswith(PROBLEM):
            wrong.append(f"{operation.label}: {response.status_code}")
    assert not wrong, "\n".join(wrong)


# API.md's tables: who may call what ("self" is the patient, for their own records; "staff"
# every staff role). Operations API.md does not list are the code's to decide.
SELF, STAFF_SET = frozenset({Role.PATIENT}), frozenset(STAFF)
API_MD = {
    "booking POST /v1/patients": SELF | {Role.SCHEDULER},
    "booking GET /v1/patients/{patient_id}": SELF | STAFF_SET,
    "booking PUT /v1/patients/{patient_id}/intake": SELF | {Role.CLINICIAN},
    "booking POST /v1/patients/{patient_id}/intake/clearance": frozenset({Role.CLINICIAN}),
    "booking GET /v1/protocols": frozenset(Role),
    "booking GET /v1/availability": SELF | {Role.SCHEDULER},
    "booking POST /v1/courses": SELF | {Role.SCHEDULER},
    "booking GET /v1/courses/{course_id}": SELF | STAFF_SET,
    "booking GET /v1/appointments": SELF | STAFF_SET,
    "booking GET /v1/appointments/{appointment_id}": SELF | STAFF_SET,
    "booking POST /v1/appointments/{appointment_id}/cancel": SELF | {Role.SCHEDULER},
    "booking POST /v1/appointments/{appointment_id}/reschedule": SELF | {Role.SCHEDULER},
    "booking POST /v1/appointments/{appointment_id}/check-in": frozenset(
        {Role.SCHEDULER, Role.CLINICIAN}
    ),
    "booking POST /v1/appointments/{appointment_id}/complete": frozenset(
        {Role.SCHEDULER, Role.CLINICIAN}
    ),
    "booking POST /v1/appointments/{appointment_id}/no-show": frozenset(
        {Role.SCHEDULER, Role.CLINICIAN}
    ),
    "booking POST /v1/appointments/{appointment_id}/ride": SELF | {Role.SCHEDULER},
    "waitlist POST /v1/entries": SELF | {Role.SCHEDULER},
    "waitlist GET /v1/entries": frozenset({Role.SCHEDULER}),
    "waitlist GET /v1/entries/{entry_id}": SELF | STAFF_SET,
    "waitlist PATCH /v1/entries/{entry_id}": frozenset({Role.SCHEDULER}),
    "waitlist DELETE /v1/entries/{entry_id}": SELF | {Role.SCHEDULER},
    "waitlist GET /v1/offers": SELF | {Role.SCHEDULER},
    "waitlist POST /v1/offers/{offer_id}/accept": SELF,
    "waitlist POST /v1/offers/{offer_id}/decline": SELF,
    "waitlist POST /v1/offers": frozenset({Role.SCHEDULER}),
    "billing GET /v1/price-book": frozenset(Role),
    "billing PUT /v1/price-book": frozenset({Role.BILLING}),
    "billing POST /v1/patients/{patient_id}/payment-methods": SELF | {Role.BILLING},
    "billing GET /v1/patients/{patient_id}/ledger": SELF | {Role.BILLING},
    "billing POST /v1/financing-plans": SELF | {Role.BILLING},
    "billing GET /v1/financing-plans/{plan_id}": SELF | {Role.BILLING},
    "billing POST /v1/refunds": frozenset({Role.BILLING}),
    "billing POST /v1/reconciliation/settlements": frozenset({Role.BILLING}),
    "billing GET /v1/reconciliation/reports/{report_id}": frozenset({Role.BILLING}),
    "billing GET /v1/patients/{patient_id}/superbill": SELF | {Role.BILLING},
    "notify GET /v1/patients/{patient_id}/notifications": SELF | STAFF_SET,
    "notify PUT /v1/patients/{patient_id}/preferences": SELF,
}
# Where the code admits more than API.md's table, and why (the code decides what API.md
# leaves open). `admin` is in no table: the code gives it every staff operation but a
# patient's own choices and the internal API.
WIDER_THAN_API_MD = {
    "waitlist POST /v1/entries": {Role.CLINICIAN},  # a clinician flags urgent entries
    "waitlist PATCH /v1/entries/{entry_id}": {Role.CLINICIAN},  # ... and raises priority
    "waitlist GET /v1/entries": {Role.PATIENT, Role.CLINICIAN},  # a patient: their own only
    "waitlist GET /v1/offers": {Role.CLINICIAN, Role.BILLING, Role.SERVICE},  # reads: staff
    "waitlist POST /v1/offers/{offer_id}/accept": {Role.SCHEDULER},  # on the patient's behalf
    "waitlist POST /v1/offers/{offer_id}/decline": {Role.SCHEDULER},  # ... by phone
}


async def test_the_documents_admit_whom_api_md_admits_and_name_every_wider_door(clinic):
    """No role API.md lets in is shut out, and every role the code lets in beyond API.md's
    table is one WIDER_THAN_API_MD names (the disagreements, reviewed)."""
    documented = {op.label: op.roles for op in clinic.operations() if op.roles is not None}
    missing = {label: roles - documented.get(label, frozenset()) for label, roles in API_MD.items()}
    assert {label: roles for label, roles in missing.items() if roles} == {}
    wider = {
        label: set(documented[label] - roles - {Role.ADMIN}) for label, roles in API_MD.items()
    }
    assert {label: roles for label, roles in wider.items() if roles} == WIDER_THAN_API_MD

"""Bad input: schemathesis against the four services' OpenAPI documents.

Every operation gets the schema's boundary and negative cases (coverage phase) and a few
generated ones (fuzzing phase), derandomized. Each case is sent signed in as patient A and as
each staff role the operation admits; ids of A's records stand in for the generated ones, so
the requests reach real records, and the webhooks' bodies are signed as their providers sign
them. Every answer must: not be a 5xx; carry a status, content type and body the document
names; reject what the schema forbids with a 4xx; answer every error as a problem
(`application/problem+json` with `type`, `title`, `status` and `code`); and refuse the same
request without a token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import Case, CheckContext, Config, Response
from schemathesis.specs.openapi.checks import ignored_auth
from starlette.types import ASGIApp

from billing.config import BillingSettings
from billing.entrypoints.api import create_app as billing_app
from booking.config import BookingSettings
from booking.entrypoints.api import create_app as booking_app
from clinic_shared.auth import Role
from clinic_shared.settings import CommonSettings
from notify.config import NotifySettings
from notify.entrypoints.api import create_app as notify_app
from waitlist.config import WaitlistSettings
from waitlist.entrypoints.api import create_app as waitlist_app

PROBLEM = "application/problem+json"
STAFF = [role for role in Role if role is not Role.PATIENT]
CONFIG = {
    "base-url": "http://testserver",
    "generation": {
        "max-examples": 8,
        "deterministic": True,
        "database": "none",
        # Every case is sent with each role's token (below) instead of a generated one.
        "with-security-parameters": False,
        # Query parameters an operation does not name are ignored, as HTTP APIs do.
        "allow-extra-parameters": False,
    },
    "phases": {"stateful": {"enabled": False}},
    # A schema-valid request may still break a rule the schema cannot state (a protocol the
    # clinic's policy does not offer, a local time that does not exist, screening questions left
    # unanswered): those are 422 problems, which the checks below hold to the same standard.
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
        }
    },
}


def documents() -> dict[str, dict[str, Any]]:
    """Each service's OpenAPI document, from its app as production wires it. These apps are
    never started: no database, processor or other service is reached (billing's Stripe client
    opens nothing until used, where the card sandbox would create its store)."""
    common = CommonSettings(jwt_secret="documents-only")  # type: ignore[arg-type]
    unused = "sqlite+aiosqlite://"
    billing = BillingSettings(
        database_url=unused,
        common=common,
        gateway="stripe",
        stripe_api_key="sk_test_documents_only",  # type: ignore[arg-type]
    )
    apps: dict[str, FastAPI] = {
        "booking": booking_app(BookingSettings(database_url=unused, common=common)),
        "waitlist": waitlist_app(WaitlistSettings(database_url=unused, common=common)),
        "billing": billing_app(billing),
        "notify": notify_app(NotifySettings(database_url=unused, common=common)),
    }
    return {service: app.openapi() for service, app in apps.items()}


SCHEMAS = {
    service: schemathesis.openapi.from_dict(document, config=Config.from_dict(CONFIG))
    for service, document in documents().items()
}


def problem_details(ctx: CheckContext, response: Response, case: Case) -> None:
    """A 4xx or 5xx answer is an RFC 9457 problem with a machine-readable code."""
    if response.status_code < 400:
        return
    media_type = response.headers.get("content-type", [""])[0].split(";")[0]
    assert media_type == PROBLEM, f"{response.status_code} answered as {media_type!r}"
    body = response.json()
    missing = {"type", "title", "status", "code"} - body.keys()
    assert not missing, f"problem without {sorted(missing)}: {body}"
    assert body["status"] == response.status_code, body


@dataclass
class Fuzzing:
    """The apps under test, on seeded databases, and the ids and tokens the cases use."""

    apps: dict[str, ASGIApp]
    ids: dict[str, str]
    patient_a: dict[str, str]
    staff: dict[Role, dict[str, str]]

    def with_real_ids(self, case: Case) -> None:
        """Where a case names a record by a well-formed id, name one of patient A's records of
        that kind instead (ill-formed ids stay: they must be refused)."""
        containers = [case.path_parameters, case.query]
        if isinstance(case.body, dict):
            containers.append(case.body)
        for values in containers:
            for name in set(values or ()) & self.ids.keys():
                if _is_uuid(values[name]):
                    values[name] = self.ids[name]

    def callers(self, case: Case) -> dict[str, dict[str, str]]:
        """Patient A, and each staff role the operation admits. (That the others are refused
        with 403, the authorization matrix shows for every operation.)"""
        admitted = {
            Role(name)
            for requirement in case.operation.definition.raw.get("security", [])
            for name in requirement.get("bearer", [])
        }
        staff = {role.value: self.staff[role] for role in STAFF if role in admitted}
        return {"patient A": self.patient_a} | staff

    def send(self, case: Case, service: str) -> None:
        self.with_real_ids(case)
        app = self.apps[service]
        # The checks that send requests of their own (e.g. the same one without the token)
        # reach the app through the test's schema.
        case.operation.schema.app = app
        for number, (who, headers) in enumerate(self.callers(case).items()):
            try:
                case.call_and_validate(
                    app=app,
                    headers=headers,
                    additional_checks=[problem_details],
                    # The same request without a token, once per case is enough.
                    excluded_checks=[] if number == 0 else [ignored_auth],
                )
            except Exception as failure:
                failure.add_note(f"signed in as {who}")
                raise


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def fuzzing(world: Any, new_apps: Any) -> Fuzzing:
    """Apps of their own for schemathesis, which runs them on its own event loop, on the
    databases `world` seeded."""
    return Fuzzing(
        new_apps().signed_by_providers(),
        world.ids,
        patient_a=world.signed_in(Role.PATIENT, world.a.id),
        staff={role: world.signed_in(role) for role in STAFF},
    )


@SCHEMAS["booking"].parametrize()
def test_booking_answers_every_request_as_its_document_says(case: Case, fuzzing: Fuzzing) -> None:
    fuzzing.send(case, "booking")


@SCHEMAS["waitlist"].parametrize()
def test_waitlist_answers_every_request_as_its_document_says(case: Case, fuzzing: Fuzzing) -> None:
    fuzzing.send(case, "waitlist")


@SCHEMAS["billing"].parametrize()
def test_billing_answers_every_request_as_its_document_says(case: Case, fuzzing: Fuzzing) -> None:
    fuzzing.send(case, "billing")


@SCHEMAS["notify"].parametrize()
def test_notify_answers_every_request_as_its_document_says(case: Case, fuzzing: Fuzzing) -> None:
    fuzzing.send(case, "notify")

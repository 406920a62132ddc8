"""JWT bearer auth with roles, as FastAPI dependencies, and the `clinic token` CLI.

Roles: patient, scheduler, clinician, billing, admin, service. A patient token's `sub` is the
patient id; a patient reaches only their own records (another patient's id answers 404).
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from fastapi import Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from clinic_shared.problems import ProblemError

ALGORITHM = "HS256"
BEARER_SCHEME = "bearer"


class Role(StrEnum):
    PATIENT = "patient"
    SCHEDULER = "scheduler"
    CLINICIAN = "clinician"
    BILLING = "billing"
    ADMIN = "admin"
    SERVICE = "service"


STAFF_ROLES = frozenset({Role.SCHEDULER, Role.CLINICIAN, Role.BILLING, Role.ADMIN, Role.SERVICE})


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def patient_id(self) -> str | None:
        return self.subject if self.role is Role.PATIENT else None

    def can_see_patient(self, patient_id: object) -> bool:
        return self.is_staff or str(patient_id) == self.subject


def issue_token(
    secret: str,
    role: Role | str,
    subject: str | None = None,
    *,
    issuer: str = "clinic",
    ttl: timedelta = timedelta(hours=12),
    now: datetime | None = None,
) -> str:
    role = Role(role)
    if role is Role.PATIENT and not subject:
        raise ValueError("a patient token needs the patient id as subject")
    issued = now or datetime.now(UTC)
    claims = {
        "sub": subject or f"{role.value}-{uuid.uuid4().hex[:8]}",
        "role": role.value,
        "iss": issuer,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str, issuer: str = "clinic") -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["sub", "role", "exp", "iss"]},
        )
        return Principal(subject=str(claims["sub"]), role=Role(claims["role"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise ProblemError(
            401, "invalid_token", "Authentication required", "The bearer token is not valid."
        ) from exc


class TokenVerifier:
    """Holds the secret; an app keeps one on `app.state.token_verifier`."""

    def __init__(self, secret: str, issuer: str = "clinic") -> None:
        self._secret = secret
        self._issuer = issuer

    def verify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ProblemError(
                401, "unauthenticated", "Authentication required", "A bearer token is required."
            )
        return decode_token(authorization[7:].strip(), self._secret, self._issuer)


# The dependencies are coroutines although they never wait: FastAPI runs a plain function
# dependency in its thread pool, two thread hand-offs per request for a few microseconds of work.


class BearerPrincipal(SecurityBase):
    """The caller named by the bearer token. As a security scheme (`bearer`) FastAPI puts it in
    the OpenAPI document, with the role names each route requires (OpenAPI 3.1 allows role
    names in a security requirement of a scheme other than OAuth2)."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description="A token with a `role` claim; for a patient `sub` is the patient id.",
        )
        self.scheme_name = BEARER_SCHEME

    async def __call__(self, request: Request) -> Principal:
        verifier: TokenVerifier = request.app.state.token_verifier
        return verifier.verify(request.headers.get("authorization"))


current_principal = BearerPrincipal()


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def _dependency(
        principal: Principal = Security(current_principal, scopes=sorted(allowed)),
    ) -> Principal:
        if principal.role not in allowed:
            raise ProblemError(403, "forbidden", "Not allowed", "Your role cannot do this.")
        return principal

    return _dependency


def ensure_patient_access(principal: Principal, patient_id: object) -> None:
    """A patient asking for someone else's record gets the same answer as for a missing one."""
    if not principal.can_see_patient(patient_id):
        raise ProblemError(404, "not_found", "Not found")


def token_cli(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clinic token", description="Print a signed JWT.")
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--patient", help="patient id (required for --role patient)")
    parser.add_argument("--subject", help="subject for staff tokens")
    parser.add_argument("--hours", type=float, default=12.0)
    args = parser.parse_args(list(argv) if argv is not None else None)
    secret = os.environ.get("CLINIC_JWT_SECRET", "")
    if not secret:
        raise SystemExit("CLINIC_JWT_SECRET is not set (the run command prints where it keeps it)")
    subject = args.patient if args.role == Role.PATIENT.value else args.subject
    try:
        token = issue_token(secret, args.role, subject, ttl=timedelta(hours=args.hours))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    print(token)

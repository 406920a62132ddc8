"""Why a command was refused, in a service layer's terms, and the HTTP answer for each.

Service layers raise these; an API route wraps its call in `answered()` and the refusal becomes
an RFC 9457 problem: `NotFound` 404, `Conflict` 409, `InvalidRequest` 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clinic_shared.problems import ProblemError


class CommandRefused(Exception):
    """Base: a machine-readable code, a human detail and any extra facts for the answer."""

    status = 409
    title = "Conflict"

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


class NotFound(CommandRefused):
    """No such record, or not one the requester may see (the same answer for both)."""

    status = 404
    title = "Not found"

    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"No such {what}.")


class Conflict(CommandRefused):
    """The request is well formed but the clinic's rules or current state refuse it now."""


class InvalidRequest(CommandRefused):
    """The request cannot be understood as asked (e.g. a local time that does not exist)."""

    status = 422
    title = "Invalid request"


@contextmanager
def answered() -> Iterator[None]:
    """Turn a service-layer refusal into its problem response."""
    try:
        yield
    except CommandRefused as exc:
        raise ProblemError(exc.status, exc.code, exc.title, exc.detail, **exc.extra) from exc

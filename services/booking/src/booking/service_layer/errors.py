"""Why a command was refused, in the service layer's terms; the API maps each to a status."""

from __future__ import annotations

from typing import Any


class CommandRefused(Exception):
    """Base: a machine-readable code, a human detail and any extra facts for the answer."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


class NotFound(CommandRefused):
    """No such record, or not one the requester may see (the same answer for both)."""

    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"No such {what}.")


class Conflict(CommandRefused):
    """The request is well formed but the clinic's rules or calendar refuse it now."""


class InvalidRequest(CommandRefused):
    """The request cannot be understood as asked (e.g. a local time that does not exist)."""

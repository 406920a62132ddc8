"""Why a command was refused: the shared refusals, which the API maps each to a status."""

from __future__ import annotations

from clinic_shared.refusals import CommandRefused, Conflict, InvalidRequest, NotFound

__all__ = ["CommandRefused", "Conflict", "InvalidRequest", "NotFound"]

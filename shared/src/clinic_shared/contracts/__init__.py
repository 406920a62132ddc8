"""Integration-event contracts, one module per producing service.

Each contract is a pydantic model with an explicit, versioned type string. Within a major
version only optional fields are added; a breaking change is a new `.v2` model beside `.v1`.
JSON Schema snapshots and sample payloads live in `snapshots/` and `samples/` beside this file.
"""

from __future__ import annotations

from clinic_shared.contracts import billing, booking, notify, waitlist
from clinic_shared.contracts.registry import CONTRACTS, TOPICS, contract_for, parse_payload

__all__ = [
    "CONTRACTS",
    "TOPICS",
    "billing",
    "booking",
    "contract_for",
    "notify",
    "parse_payload",
    "waitlist",
]

"""What the waitlist needs from outside, as ports; adapters implement them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class PatientFacts:
    """What the waitlist needs to know of a patient from booking: that they exist, and the
    condition their intake names (a maintenance entry waits in that family)."""

    patient_id: UUID
    condition: str | None


class PatientDirectory(Protocol):
    async def lookup(self, patient_id: UUID) -> PatientFacts | None:
        """The patient's facts; None when booking knows no such patient."""
        ...

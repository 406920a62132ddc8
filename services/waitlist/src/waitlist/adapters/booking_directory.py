"""Booking's internal API as the waitlist's patient directory (httpx, a service token)."""

from __future__ import annotations

from uuid import UUID

from clinic_shared.internal_api import InternalApiClient
from waitlist.domain.ports import PatientFacts


class BookingDirectory:
    def __init__(self, base_url: str, secret: str, timeout: float = 5.0) -> None:
        self._booking = InternalApiClient(
            base_url, secret, caller="waitlist", callee="booking", timeout=timeout
        )

    async def lookup(self, patient_id: UUID) -> PatientFacts | None:
        body = await self._booking.get_json(f"/internal/v1/patients/{patient_id}")
        if body is None:
            return None
        return PatientFacts(patient_id=patient_id, condition=body.get("condition"))

    async def close(self) -> None:
        await self._booking.close()

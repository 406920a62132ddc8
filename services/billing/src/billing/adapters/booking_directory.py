"""Booking's internal API as billing's patient directory (httpx, a service token)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from billing.domain.ports import PatientRecord
from clinic_shared.internal_api import InternalApiClient


class BookingDirectory:
    def __init__(self, base_url: str, secret: str, timeout: float = 5.0) -> None:
        self._booking = InternalApiClient(
            base_url, secret, caller="billing", callee="booking", timeout=timeout
        )

    async def lookup(self, patient_id: UUID) -> PatientRecord | None:
        body = await self._booking.get_json(f"/internal/v1/patients/{patient_id}")
        if body is None:
            return None
        born = body.get("date_of_birth")
        return PatientRecord(
            patient_id=patient_id,
            first_name=body.get("first_name", ""),
            last_name=body.get("last_name", ""),
            date_of_birth=date.fromisoformat(born) if born else None,
            diagnosis_codes=list(body.get("diagnosis_codes") or []),
        )

    async def close(self) -> None:
        await self._booking.close()

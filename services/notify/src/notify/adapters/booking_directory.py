"""Booking's internal API as notify's patient directory (httpx, a service token per call)."""

from __future__ import annotations

from uuid import UUID

from clinic_shared.internal_api import InternalApiClient
from notify.domain.ports import Contact


class BookingDirectory:
    def __init__(self, base_url: str, secret: str, timeout: float = 5.0) -> None:
        self._booking = InternalApiClient(
            base_url, secret, caller="notify", callee="booking", timeout=timeout
        )

    async def contact(self, patient_id: UUID) -> Contact | None:
        body = await self._booking.get_json(f"/internal/v1/patients/{patient_id}")
        if body is None:
            return None
        return Contact(
            first_name=body.get("first_name") or "",
            email=body.get("email"),
            phone=body.get("phone"),
            medication_classes=frozenset(body.get("medication_classes") or ()),
        )

    async def confirm_ride(self, appointment_id: UUID, patient_id: UUID) -> bool:
        status, _ = await self._booking.post_json(
            f"/internal/v1/appointments/{appointment_id}/ride",
            {"patient_id": str(patient_id)},
        )
        return 200 <= status < 300

    async def close(self) -> None:
        await self._booking.close()

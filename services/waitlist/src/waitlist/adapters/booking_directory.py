"""Booking's internal API as the waitlist's patient directory (httpx, a service token)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import httpx

from clinic_shared.auth import Role, issue_token
from clinic_shared.problems import ProblemError
from waitlist.domain.ports import PatientFacts


class BookingDirectory:
    def __init__(self, base_url: str, secret: str, timeout: float = 5.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)

    def _headers(self) -> dict[str, str]:
        token = issue_token(self._secret, Role.SERVICE, "waitlist", ttl=timedelta(minutes=5))
        return {"Authorization": f"Bearer {token}"}

    async def lookup(self, patient_id: UUID) -> PatientFacts | None:
        url = f"{self._base_url}/internal/v1/patients/{patient_id}"
        try:
            response = await self._client.get(url, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _unavailable() from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unavailable()
        return PatientFacts(patient_id=patient_id, condition=response.json().get("condition"))

    async def close(self) -> None:
        await self._client.aclose()


def _unavailable() -> ProblemError:
    return ProblemError(
        503,
        "booking_unavailable",
        "Service unavailable",
        "The patient could not be looked up in booking; try again shortly.",
    )

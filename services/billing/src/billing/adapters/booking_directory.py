"""Booking's internal API as billing's patient directory (httpx, a service token)."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import httpx

from billing.domain.ports import PatientRecord
from clinic_shared.auth import Role, issue_token
from clinic_shared.problems import ProblemError


class BookingDirectory:
    def __init__(self, base_url: str, secret: str, timeout: float = 5.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)

    async def lookup(self, patient_id: UUID) -> PatientRecord | None:
        token = issue_token(self._secret, Role.SERVICE, "billing", ttl=timedelta(minutes=5))
        try:
            response = await self._client.get(
                f"{self._base_url}/internal/v1/patients/{patient_id}",
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise _unavailable() from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unavailable()
        body = response.json()
        born = body.get("date_of_birth")
        return PatientRecord(
            patient_id=patient_id,
            first_name=body.get("first_name", ""),
            last_name=body.get("last_name", ""),
            date_of_birth=date.fromisoformat(born) if born else None,
            diagnosis_codes=list(body.get("diagnosis_codes") or []),
        )

    async def close(self) -> None:
        await self._client.aclose()


def _unavailable() -> ProblemError:
    return ProblemError(
        503,
        "booking_unavailable",
        "Service unavailable",
        "The patient's details could not be read from booking; try again shortly.",
    )

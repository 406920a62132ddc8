"""A client for another service's internal API (`/internal/v1/...`): httpx, a short-lived
service token per call, and one answer for every way the other service can fail to answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from clinic_shared.auth import Role, issue_token
from clinic_shared.problems import ProblemError


class InternalApiClient:
    def __init__(
        self, base_url: str, secret: str, *, caller: str, callee: str, timeout: float = 5.0
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._caller = caller
        self._callee = callee
        self._client = httpx.AsyncClient(timeout=timeout)

    def _headers(self) -> dict[str, str]:
        token = issue_token(self._secret, Role.SERVICE, self._caller, ttl=timedelta(minutes=5))
        return {"Authorization": f"Bearer {token}"}

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of a 2xx or 4xx answer (the other service's decision);
        503 `<callee>_unavailable` when no decision can be had (5xx, no answer)."""
        try:
            response = await self._client.post(
                f"{self._base_url}{path}", json=body, headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise self._unavailable() from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise self._unavailable()  # down, or not letting us in: no decision either way
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return response.status_code, answer if isinstance(answer, dict) else {}

    async def get_json(self, path: str) -> dict[str, Any] | None:
        """The JSON body, None on 404; 503 `<callee>_unavailable` when no answer can be had."""
        try:
            response = await self._client.get(f"{self._base_url}{path}", headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._unavailable() from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unavailable()
        body = response.json()
        if not isinstance(body, dict):
            raise self._unavailable()
        return body

    def _unavailable(self) -> ProblemError:
        return ProblemError(
            503,
            f"{self._callee}_unavailable",
            "Service unavailable",
            f"{self._callee.capitalize()} could not be asked; try again shortly.",
        )

    async def close(self) -> None:
        await self._client.aclose()

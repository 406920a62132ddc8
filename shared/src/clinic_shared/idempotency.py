"""`Idempotency-Key` for POSTs that create or charge something.

The key's record is written in the same transaction as the state change it answers for, so a
key never points at a change that did not happen, and a change never lacks its key. Same key,
same body: the first answer again (header `Idempotent-Replayed: true`). Same key, another
body: 422. Two racing requests with one key: one applies, the other replays its answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from clinic_shared.auth import Principal
from clinic_shared.problems import ProblemError
from clinic_shared.uow import SqlUnitOfWork

Action = Callable[[SqlUnitOfWork], Awaitable[tuple[int, dict[str, Any]]]]
MAX_KEY_LENGTH = 200


def request_fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_idempotent(
    request: Request,
    uow_factory: Callable[[], SqlUnitOfWork],
    principal: Principal,
    payload: Any,
    action: Action,
) -> JSONResponse:
    """Run `action` in a unit of work and commit it, honouring the Idempotency-Key header."""
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise ProblemError(
            400, "invalid_idempotency_key", "Invalid Idempotency-Key", "1 to 200 characters."
        )
    scope = f"{principal.role.value}:{principal.subject}:{request.method}:{request.url.path}"
    fingerprint = request_fingerprint(payload)
    if key is None:
        async with uow_factory() as uow:
            status, body = await action(uow)
            await uow.commit()
        return JSONResponse(body, status_code=status)

    async with uow_factory() as uow:
        replay = await _replay(uow, scope, key, fingerprint)
        if replay is not None:
            return replay
        try:
            status, body = await action(uow)
            await uow.session.execute(
                sa.insert(uow.tables.idempotency).values(
                    scope=scope,
                    key=key,
                    request_hash=fingerprint,
                    status_code=status,
                    response_body=body,
                    created_at=uow.clock.now(),
                )
            )
            await uow.commit()
            return JSONResponse(body, status_code=status)
        except (IntegrityError, ProblemError) as exc:
            # Maybe a concurrent request with this key won the race (its change made ours fail,
            # or its key row made ours clash): then answer as it did.
            await uow.rollback()
            lost_race: Exception = exc
    async with uow_factory() as uow:
        replay = await _replay(uow, scope, key, fingerprint)
    if replay is not None:
        return replay
    if isinstance(lost_race, ProblemError):
        raise lost_race
    raise ProblemError(409, "idempotency_conflict", "Concurrent request with this key")


async def _replay(
    uow: SqlUnitOfWork, scope: str, key: str, fingerprint: str
) -> JSONResponse | None:
    table = uow.tables.idempotency
    row = (
        await uow.session.execute(
            sa.select(table.c.request_hash, table.c.status_code, table.c.response_body).where(
                table.c.scope == scope, table.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise ProblemError(
            422,
            "idempotency_key_reused",
            "Idempotency-Key reused with a different request",
            "This key was first used with another request body.",
        )
    return JSONResponse(
        row.response_body, status_code=row.status_code, headers={"Idempotent-Replayed": "true"}
    )

"""An API whose database is away answers 503 with a problem, and a bug still answers 500."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from clinic_shared.db import create_engine
from clinic_shared.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from clinic_shared.testing import free_port


def _app(database_url: str) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    engine = create_engine(database_url)

    @app.get("/count")
    async def count() -> dict[str, int]:
        async with engine.connect() as conn:
            return {"n": int((await conn.execute(sa.text("SELECT 1"))).scalar_one())}

    @app.get("/bug")
    async def bug() -> dict[str, int]:
        return {"n": 1 // 0}

    return app


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://clinic") as client:
        return await client.get(path)


async def test_a_database_nobody_answers_gives_503_with_retry_after():
    nobody = f"postgresql+asyncpg://clinic@127.0.0.1:{free_port()}/clinic"
    response = await _get(_app(nobody), "/count")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "2"
    assert response.json()["code"] == "database_unavailable"


async def test_a_bug_is_still_an_internal_error():
    response = await _get(_app("sqlite+aiosqlite:///:memory:"), "/bug")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"

"""What every service's HTTP app has: problem responses, correlation ids, request logs through
structlog, Prometheus metrics, `/healthz`, `/readyz` (database and broker) and `/metrics`, an
OpenAPI document that names every answer a route can give (its problems, who may call it), the
refusal of text with NUL characters, and the date and time fields requests write as text."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from datetime import time as clock_time
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka.client import AIOKafkaClient
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import AwareDatetime, BeforeValidator, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinic_shared.auth import BEARER_SCHEME, Role, TokenVerifier
from clinic_shared.logging import correlation_id_var, get_logger, new_correlation_id
from clinic_shared.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_SCHEMA,
    install_problem_handlers,
    problem_response,
)
from clinic_shared.runtime import Infrastructure
from clinic_shared.settings import ServiceSettings

log = get_logger("http")
CORRELATION_HEADER = "x-correlation-id"
CORRELATION_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,64}")


# Times in requests are text. Pydantic would read a number as seconds since 1970 (a date, a
# date-time) or since midnight (a time of day): `"date_of_birth": 0` became 1970-01-01.


def _not_a_number(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and _reads_as_number(value)):
        raise ValueError("a date or time is written as RFC 3339 text, not a number")
    return value


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


LOCAL_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"


def _local_time_text(value: Any) -> Any:
    if isinstance(value, clock_time) and value.tzinfo is None:
        return value
    if not isinstance(value, str) or not re.fullmatch(LOCAL_TIME_PATTERN, value):
        raise ValueError("a clinic-local time is HH:MM or HH:MM:SS, without an offset")
    return value


DateText = Annotated[date, BeforeValidator(_not_a_number)]
DateTimeText = Annotated[datetime, BeforeValidator(_not_a_number)]
AwareDateTimeText = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
LocalTime = Annotated[
    clock_time,
    BeforeValidator(_local_time_text),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": LOCAL_TIME_PATTERN,
            "description": "A wall time in the clinic's zone, HH:MM or HH:MM:SS",
        }
    ),
]


class BrokerProbe:
    """Answers 'is Kafka reachable' from a long-lived metadata client."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._client: AIOKafkaClient | None = None

    async def check(self, timeout: float = 3.0) -> bool:
        try:
            if self._client is None:
                client = AIOKafkaClient(bootstrap_servers=self._bootstrap, client_id="readyz")
                await asyncio.wait_for(client.bootstrap(), timeout)
                self._client = client
            await asyncio.wait_for(self._client.fetch_all_metadata(), timeout)
            return True
        except Exception:
            await self.close()
            return False

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.close()
            except Exception as exc:
                log.debug("broker probe close failed", error=type(exc).__name__)


class TextWithoutNul:
    """Refuses (422) a request whose query or JSON body carries a NUL character: PostgreSQL
    cannot store one in text (it answered 500), and no field of ours has a use for it."""

    # JSON can carry NUL only as the escape \u0000 (not preceded by an escaping backslash).
    JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            await self._refuse(scope, receive, send)
            return
        content_type = dict(scope.get("headers") or ()).get(b"content-type", b"")
        if b"json" not in content_type:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody is left to answer
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.JSON_NUL.search(body):
            await self._refuse(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        detail = "Text may not contain NUL characters."
        refusal = problem_response(422, "invalid_text", "Invalid request", detail)
        await refusal(scope, receive, send)


class RequestContextMiddleware:
    """Binds a correlation id (from `X-Correlation-ID` or new), logs and measures each request."""

    def __init__(self, app: ASGIApp, service: str, registry: CollectorRegistry) -> None:
        self.app = app
        self.service = service
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(CORRELATION_HEADER.encode(), b"")
        # It travels into logs, event headers and the outbox: only a plain token is taken.
        correlation_id = (
            incoming.decode("ascii") if CORRELATION_ID.fullmatch(incoming) else new_correlation_id()
        )
        token = correlation_id_var.set(correlation_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            status = status_holder["status"]
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(elapsed)
            if template not in ("/healthz", "/metrics", "/readyz"):
                log.info(
                    "request",
                    method=scope["method"],
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            correlation_id_var.reset(token)


def create_service_app(
    *,
    settings: ServiceSettings,
    infra: Infrastructure,
    title: str,
    description: str,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> FastAPI:
    """A service's FastAPI app with everything but its own routes; `on_shutdown` closes what
    the service's own routes opened (e.g. an HTTP client to another service)."""
    service = settings.service_name
    engine = infra.engine
    probe = BrokerProbe(settings.common.kafka_bootstrap_servers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for close in on_shutdown:
            await close()
        await probe.close()
        await infra.dispose()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_answers(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.broker_probe = probe
    app.state.infra = infra
    app.state.token_verifier = TokenVerifier(settings.jwt_secret, settings.common.jwt_issuer)
    registry = CollectorRegistry()
    install_problem_handlers(app)
    app.add_middleware(TextWithoutNul)
    app.add_middleware(RequestContextMiddleware, service=service, registry=registry)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=None,
        responses={503: {"description": "The database or Kafka is unreachable"}},
    )
    async def readyz() -> JSONResponse:
        checks = {"database": await _database_ready(engine), "kafka": await probe.check()}
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response(
            503, "not_ready", "Not ready", "A dependency is unreachable.", checks=checks
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _database_ready(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 3.0)
        return True
    except Exception:
        return False


def describe_answers(document: dict[str, Any]) -> dict[str, Any]:
    """Complete FastAPI's OpenAPI document with the answers it cannot see: every error is a
    problem (`application/problem+json`, 422 included); a body that is not JSON answers 400; a
    route that needs a token answers 401 and, unless every role may call it, 403; a route with
    an id in its path answers 404 for a record that is missing or not the caller's."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)  # FastAPI's shape for 422; ours is a problem
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    every_role = sorted(Role)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation["responses"]
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault("400", {"description": "The body is not JSON"})
            for requirement in operation.get("security", []):
                roles = requirement.get(BEARER_SCHEME)
                if roles is None:
                    continue
                responses.setdefault("401", {"description": "No valid bearer token"})
                if sorted(roles) != every_role:
                    responses.setdefault(
                        "403", {"description": f"Only for the roles {', '.join(roles)}"}
                    )
            if "{" in path:
                responses.setdefault(
                    "404", {"description": "No such record, or not one the caller may see"}
                )
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = problem
    return document

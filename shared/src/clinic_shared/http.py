"""What every service's HTTP app has: problem responses, correlation ids, request logs through
structlog, Prometheus metrics, `/healthz`, `/readyz` (database and broker) and `/metrics`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

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
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinic_shared.auth import TokenVerifier
from clinic_shared.logging import correlation_id_var, get_logger, new_correlation_id
from clinic_shared.problems import install_problem_handlers, problem_response
from clinic_shared.runtime import Infrastructure
from clinic_shared.settings import ServiceSettings

log = get_logger("http")
CORRELATION_HEADER = "x-correlation-id"


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
        incoming = dict(scope.get("headers") or ()).get(CORRELATION_HEADER.encode())
        correlation_id = incoming.decode()[:64] if incoming else new_correlation_id()
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
    app.state.broker_probe = probe
    app.state.infra = infra
    app.state.token_verifier = TokenVerifier(settings.jwt_secret, settings.common.jwt_issuer)
    registry = CollectorRegistry()
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service, registry=registry)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"], response_model=None)
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

"""The command line every service shares: `python -m <service> api|consumer|relay|migrate`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from clinic_shared import migrations
from clinic_shared.consumer import Handler
from clinic_shared.duequeue import DueJob, close_jobs, run_dispatcher
from clinic_shared.logging import configure_logging, get_logger
from clinic_shared.policy import PolicyError, load_policy
from clinic_shared.runtime import (
    Infrastructure,
    install_stop_signals,
    run_consumer,
    run_relay,
)
from clinic_shared.settings import ServiceSettings

log = get_logger(__name__)


@dataclass
class ServiceDefinition:
    name: str
    service_dir: Path
    load_settings: Callable[[], ServiceSettings]
    create_app: Callable[[ServiceSettings], FastAPI]
    bootstrap: Callable[[ServiceSettings], Infrastructure]
    consumer_topics: list[str] = field(default_factory=list)
    handlers: Mapping[str, Handler] | Callable[[ServiceSettings], Mapping[str, Handler]] = field(
        default_factory=dict
    )
    """The consumer's handlers, or a builder of them from the settings (for handlers that
    need an adapter, such as another service's API)."""
    seed: Callable[[Infrastructure], Awaitable[None]] | None = None
    due_jobs: Callable[[ServiceSettings], Sequence[DueJob]] | None = None
    """Builds the service's durable timers from its settings; with any, `dispatcher` works them."""


def main(definition: ServiceDefinition, argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {definition.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API")
    sub.add_parser("consumer", help="apply events from Kafka (inbox)")
    sub.add_parser("relay", help="publish the outbox to Kafka")
    migrate = sub.add_parser("migrate", help="upgrade the database (to head by default)")
    migrate.add_argument("revision", nargs="?", default="head")
    downgrade = sub.add_parser("downgrade", help="downgrade the database to a revision")
    downgrade.add_argument("revision", help="target revision, e.g. -1 or base")
    if definition.due_jobs is not None:
        sub.add_parser("dispatcher", help="work the due-queues (durable timers) in the database")
    if definition.seed is not None:
        sub.add_parser("seed", help="load the demo clinic's data (idempotent)")
    args = parser.parse_args(argv)

    settings = definition.load_settings()
    try:
        load_policy(settings.common.policy_file)
    except PolicyError as exc:  # refuse to start on a policy the clinic did not mean
        sys.exit(f"{definition.name}: {exc}")
    configure_logging(
        f"{definition.name}.{args.command}", settings.common.log_level, settings.common.log_json
    )
    if args.command == "api":
        _serve(definition, settings)
    elif args.command == "migrate":
        migrations.upgrade(definition.service_dir, settings.database_url, args.revision)
    elif args.command == "downgrade":
        migrations.downgrade(definition.service_dir, settings.database_url, args.revision)
    else:
        asyncio.run(_run_worker(definition, settings, args.command))


def _serve(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    app = definition.create_app(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


async def _run_worker(
    definition: ServiceDefinition, settings: ServiceSettings, command: str
) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    infra = definition.bootstrap(settings)
    try:
        if command == "relay":
            await run_relay(infra, stop)
        elif command == "consumer":
            await run_consumer(
                infra,
                stop,
                group=settings.consumer_group or definition.name,
                topics=definition.consumer_topics,
                handlers=(
                    definition.handlers(settings)
                    if callable(definition.handlers)
                    else definition.handlers
                ),
            )
        elif command == "dispatcher" and definition.due_jobs is not None:
            jobs = definition.due_jobs(settings)
            log.info("dispatcher started", jobs=[job.name for job in jobs])
            try:
                applied = await run_dispatcher(
                    jobs,
                    infra.uow_factory,
                    stop,
                    poll_interval=settings.dispatcher_poll_interval_seconds,
                )
            finally:
                await close_jobs(jobs)
            log.info("dispatcher stopped", applied=applied)
        elif command == "seed" and definition.seed is not None:
            await definition.seed(infra)
    finally:
        await infra.dispose()

"""`python -m billing api|consumer|relay|migrate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from billing.bootstrap import bootstrap
from billing.config import load_settings
from billing.entrypoints.api import create_app
from billing.entrypoints.consumer import CONSUMED_TOPICS, EVENT_HANDLERS
from clinic_shared.service_main import ServiceDefinition, main

SERVICE_DIR = Path(__file__).resolve().parents[3]

DEFINITION = ServiceDefinition(
    name="billing",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=EVENT_HANDLERS,
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

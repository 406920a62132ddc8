"""`python -m notify api|consumer|relay|migrate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinic_shared.service_main import ServiceDefinition, main
from notify.bootstrap import bootstrap
from notify.config import load_settings
from notify.entrypoints.api import create_app
from notify.entrypoints.consumer import CONSUMED_TOPICS, EVENT_HANDLERS

SERVICE_DIR = Path(__file__).resolve().parents[3]

DEFINITION = ServiceDefinition(
    name="notify",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=EVENT_HANDLERS,
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

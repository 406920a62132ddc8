"""`python -m booking api|consumer|relay|migrate|seed`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from booking.bootstrap import bootstrap
from booking.config import load_settings
from booking.entrypoints.api import create_app
from booking.entrypoints.consumer import CONSUMED_TOPICS, EVENT_HANDLERS
from booking.entrypoints.seed import seed
from clinic_shared.service_main import ServiceDefinition, main

SERVICE_DIR = Path(__file__).resolve().parents[3]

DEFINITION = ServiceDefinition(
    name="booking",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=EVENT_HANDLERS,
    seed=seed,
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

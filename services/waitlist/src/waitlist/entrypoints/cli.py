"""`python -m waitlist api|consumer|relay|dispatcher|migrate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinic_shared.service_main import ServiceDefinition, main
from waitlist.bootstrap import bootstrap
from waitlist.config import load_settings
from waitlist.entrypoints.api import create_app
from waitlist.entrypoints.consumer import CONSUMED_TOPICS, EVENT_HANDLERS
from waitlist.service_layer.offers import OfferExpiry

SERVICE_DIR = Path(__file__).resolve().parents[3]

DEFINITION = ServiceDefinition(
    name="waitlist",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=EVENT_HANDLERS,
    due_jobs=lambda _settings: [OfferExpiry()],
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

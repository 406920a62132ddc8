"""`python -m billing api|consumer|relay|dispatcher|migrate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from billing.bootstrap import bootstrap, build_gateway
from billing.config import BillingSettings, load_settings
from billing.entrypoints.api import create_app
from billing.entrypoints.consumer import CONSUMED_TOPICS, EVENT_HANDLERS
from billing.service_layer.charges import CardCharges
from billing.service_layer.refunds import RefundSubmissions
from clinic_shared.duequeue import DueJob
from clinic_shared.service_main import ServiceDefinition, main
from clinic_shared.settings import ServiceSettings

SERVICE_DIR = Path(__file__).resolve().parents[3]


def due_jobs(settings: ServiceSettings) -> list[DueJob]:
    """Charges and refunds, both through one processor client."""
    assert isinstance(settings, BillingSettings)
    gateway = build_gateway(settings)
    return [CardCharges(gateway), RefundSubmissions(gateway)]


DEFINITION = ServiceDefinition(
    name="billing",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=EVENT_HANDLERS,
    due_jobs=due_jobs,
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

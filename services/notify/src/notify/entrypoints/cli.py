"""`python -m notify api|consumer|relay|dispatcher|migrate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from clinic_shared.consumer import Handler
from clinic_shared.duequeue import DueJob
from clinic_shared.service_main import ServiceDefinition, main
from clinic_shared.settings import ServiceSettings
from notify.bootstrap import bootstrap, build_channels, build_directory
from notify.config import NotifySettings, load_settings
from notify.entrypoints.api import create_app
from notify.entrypoints.consumer import CONSUMED_TOPICS, event_handlers
from notify.service_layer.delivery import Deliveries, StaleClaims
from notify.service_layer.replies import RideReplies

SERVICE_DIR = Path(__file__).resolve().parents[3]


def due_jobs(settings: ServiceSettings) -> list[DueJob]:
    """Messages to send, stale claims to settle, ride replies to pass on to booking."""
    assert isinstance(settings, NotifySettings)
    directory = build_directory(settings)
    return [
        Deliveries(build_channels(settings), directory, settings.digest_key()),
        StaleClaims(),
        RideReplies(directory),
    ]


def handlers(settings: ServiceSettings) -> Mapping[str, Handler]:
    assert isinstance(settings, NotifySettings)
    return event_handlers(build_directory(settings))


DEFINITION = ServiceDefinition(
    name="notify",
    service_dir=SERVICE_DIR,
    load_settings=load_settings,
    create_app=create_app,
    bootstrap=bootstrap,
    consumer_topics=CONSUMED_TOPICS,
    handlers=handlers,
    due_jobs=due_jobs,
)


def run(argv: Sequence[str] | None = None) -> None:
    main(DEFINITION, argv)

"""The fault harness's own infrastructure: a Kafka broker and a PostgreSQL cluster that its
scenario restarts and stops (so never the session's shared ones), a real SMTP server, and the
clinic running on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import PostgresCluster

from .harness import Clinic, GatedSmtpServer, build_clinic


@pytest.fixture(scope="module")
def fault_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("faults-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.fixture(scope="module")
def smtp() -> Iterator[GatedSmtpServer]:
    server = GatedSmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.release()  # a message held when a test failed would keep the server from stopping
        server.stop()


@pytest.fixture(scope="module")
def clinic(
    fault_broker: KafkaBroker,
    fault_postgres: PostgresCluster,
    smtp: GatedSmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Clinic]:
    """The four services' databases and settings on the harness's broker and cluster; the
    scenario starts their processes, some of them armed with faults."""
    logs: Path = tmp_path_factory.mktemp("faults-logs")
    built = build_clinic(fault_broker, fault_postgres, smtp, logs)
    try:
        yield built
    finally:
        built.system.stop_all()

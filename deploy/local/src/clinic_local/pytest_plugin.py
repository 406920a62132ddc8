"""Session fixtures for Kafka and PostgreSQL (loaded with ``-p clinic_local.pytest_plugin``).

Nothing starts unless a test asks for a fixture. Settings pointing at existing servers win:
``CLINIC_TEST_KAFKA_BOOTSTRAP`` (``host:port``) and ``CLINIC_TEST_POSTGRES_DSN``
(``postgresql://user@host:port/postgres``); otherwise a local broker / cluster is launched.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator

import pytest

from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import ExternalPostgres, PostgresCluster
from clinic_local.stripe_mock import StripeMock, external_url

KAFKA_ENV = "CLINIC_TEST_KAFKA_BOOTSTRAP"
POSTGRES_ENV = "CLINIC_TEST_POSTGRES_DSN"


@pytest.fixture(scope="session")
def _clinic_local_kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``host:port`` of a Kafka broker: ``$CLINIC_TEST_KAFKA_BOOTSTRAP`` or a local one."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        return external
    broker: KafkaBroker = request.getfixturevalue("_clinic_local_kafka_broker")
    return broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> KafkaBroker:
    """The broker this session launched (tests that stop/kill/restart it need it)."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        pytest.fail(
            f"this test controls the broker process, but {KAFKA_ENV}={external} points at an "
            f"external server: unset {KAFKA_ENV} to run it against a local broker",
            pytrace=False,
        )
    broker: KafkaBroker = request.getfixturevalue("_clinic_local_kafka_broker")
    return broker


@pytest.fixture(scope="session")
def stripe_mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://host:port`` of stripe-mock: ``$CLINIC_TEST_STRIPE_MOCK_URL`` (or
    ``$STRIPE_MOCK_URL``) when set, otherwise one launched for the session."""
    external = external_url()
    if external:
        yield external
        return
    mock = StripeMock(tmp_path_factory.mktemp("stripe-mock"))
    mock.start()
    try:
        yield mock.url
    finally:
        mock.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | ExternalPostgres]:
    """A server with ``create_database``/``dsn``/``raw_dsn``: external (env) or a local one."""
    external = os.environ.get(POSTGRES_ENV)
    if external:
        yield ExternalPostgres(external)
        return
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.fixture
def fresh_pg_database(postgres_cluster: PostgresCluster | ExternalPostgres) -> Iterator[str]:
    """The ``postgresql+asyncpg://`` DSN of a new, uniquely named database with btree_gist.

    For plain asyncpg strip ``+asyncpg`` (``clinic_local.postgres.to_raw_dsn``). The database
    is dropped after the test when the server is still up.
    """
    name = f"t_{uuid.uuid4().hex[:16]}"
    dsn = postgres_cluster.create_database(name)
    yield dsn
    if postgres_cluster.is_running:
        try:
            postgres_cluster.drop_database(name)
        except Exception as exc:  # a test may leave the server unusable: never fail teardown
            warnings.warn(f"clinic_local: could not drop database {name}: {exc!r}", stacklevel=1)

"""Session fixtures for Kafka and PostgreSQL (loaded with ``-p clinic_local.pytest_plugin``).

Nothing starts unless a test asks for a fixture. For each server, in this order:

1. a setting pointing at an existing server wins: ``CLINIC_TEST_KAFKA_BOOTSTRAP``
   (``host:port``), ``CLINIC_TEST_POSTGRES_DSN`` (``postgresql://user@host:port/postgres``);
2. otherwise, when a Docker engine answers, testcontainers (Kafka in KRaft mode, ``postgres:16``);
3. otherwise the local launchers (:class:`KafkaBroker`, :class:`PostgresCluster`).

``CLINIC_TEST_INFRA=auto|local|docker`` (default ``auto``) forces step 2 or 3; ``docker``
without a reachable engine fails the tests that need a server, with the reason.
"""

from __future__ import annotations

import functools
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias, cast

import pytest

from clinic_local.containers import (
    KafkaContainerLike,
    KafkaInContainer,
    PostgresContainerLike,
    PostgresInContainer,
    docker_problem,
    new_kafka_container,
    new_postgres_container,
)
from clinic_local.kafka import KafkaBroker
from clinic_local.postgres import ExternalPostgres, PostgresCluster
from clinic_local.stripe_mock import StripeMock, external_url

KAFKA_ENV = "CLINIC_TEST_KAFKA_BOOTSTRAP"
POSTGRES_ENV = "CLINIC_TEST_POSTGRES_DSN"
INFRA_ENV = "CLINIC_TEST_INFRA"
INFRA_MODES = ("auto", "local", "docker")

InfraChoice = Literal["external", "docker", "local"]


class InfraChoiceError(RuntimeError):
    """The settings ask for something this machine cannot give (or are not understood)."""


def infra_mode(env: Mapping[str, str]) -> str:
    mode = (env.get(INFRA_ENV) or "auto").strip().lower()
    if mode not in INFRA_MODES:
        raise InfraChoiceError(
            f"{INFRA_ENV}={env.get(INFRA_ENV)!r} is not one of {', '.join(INFRA_MODES)}"
        )
    return mode


def choose_infra(
    env: Mapping[str, str], server_env: str, probe_docker: Callable[[], str | None]
) -> InfraChoice:
    """Where the server named by ``server_env`` comes from.

    ``probe_docker`` returns ``None`` when a Docker engine answers, else the reason it does
    not; it is only called when the answer matters.
    """
    if env.get(server_env):
        return "external"
    mode = infra_mode(env)
    if mode == "local":
        return "local"
    problem = probe_docker()
    if problem is None:
        return "docker"
    if mode == "docker":
        raise InfraChoiceError(
            f"{INFRA_ENV}=docker, but no Docker engine is reachable ({problem}); start one "
            f"(or point DOCKER_HOST at it), or unset {INFRA_ENV} to use the local launchers"
        )
    return "local"


@dataclass(frozen=True)
class Launchers:
    """What the session fixtures use to find an engine and to launch servers.

    The fixture ``_clinic_local_launchers`` returns the real ones; a ``conftest.py`` may
    override it (the plugin's own tests inject fakes that way).
    """

    probe_docker: Callable[[], str | None] = field(default=docker_problem)
    kafka_container: Callable[[], KafkaContainerLike] = field(default=new_kafka_container)
    postgres_container: Callable[[], PostgresContainerLike] = field(default=new_postgres_container)
    local_kafka: Callable[[Path], KafkaBroker] = field(default=KafkaBroker)
    local_postgres: Callable[[], PostgresCluster] = field(default=PostgresCluster)


@dataclass(frozen=True)
class ExternalKafka:
    """An existing broker named by ``$CLINIC_TEST_KAFKA_BOOTSTRAP``."""

    bootstrap_servers: str


KafkaServer: TypeAlias = ExternalKafka | KafkaInContainer | KafkaBroker
PostgresServer: TypeAlias = ExternalPostgres | PostgresCluster  # containers: ExternalPostgres


@contextmanager
def kafka_server(
    env: Mapping[str, str], launchers: Launchers, data_dir: Callable[[], Path]
) -> Iterator[KafkaServer]:
    """The session's Kafka, chosen by :func:`choose_infra`; stopped on exit when launched."""
    choice = choose_infra(env, KAFKA_ENV, launchers.probe_docker)
    if choice == "external":
        yield ExternalKafka(env[KAFKA_ENV])
    elif choice == "docker":
        with KafkaInContainer.running(launchers.kafka_container()) as container:
            yield container
    else:
        broker = launchers.local_kafka(data_dir())
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@contextmanager
def postgres_server(env: Mapping[str, str], launchers: Launchers) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, chosen by :func:`choose_infra`; stopped on exit when launched."""
    choice = choose_infra(env, POSTGRES_ENV, launchers.probe_docker)
    if choice == "external":
        yield ExternalPostgres(env[POSTGRES_ENV])
    elif choice == "docker":
        with PostgresInContainer.running(launchers.postgres_container()) as container:
            yield container
    else:
        cluster = launchers.local_postgres()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
            cluster.cleanup()


@contextmanager
def _fail_on_bad_choice() -> Iterator[None]:
    try:
        yield
    except InfraChoiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def _clinic_local_launchers() -> Launchers:
    """The real launchers; the Docker engine is asked once per session."""
    return Launchers(probe_docker=functools.cache(docker_problem))


@pytest.fixture(scope="session")
def _clinic_local_kafka(
    _clinic_local_launchers: Launchers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaServer]:
    launchers = _clinic_local_launchers
    with _fail_on_bad_choice():  # raised before the yield only
        with kafka_server(os.environ, launchers, lambda: tmp_path_factory.mktemp("kafka")) as kafka:
            yield kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(_clinic_local_kafka: KafkaServer) -> str:
    """``host:port`` of a Kafka broker: ``$CLINIC_TEST_KAFKA_BOOTSTRAP``, a container or a
    local one."""
    return _clinic_local_kafka.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, _clinic_local_launchers: Launchers) -> KafkaBroker:
    """The broker process this session launched (tests that stop/kill/restart it need it)."""
    with _fail_on_bad_choice():
        choice = choose_infra(os.environ, KAFKA_ENV, _clinic_local_launchers.probe_docker)
    if choice == "external":
        pytest.fail(
            f"this test controls the broker process, but {KAFKA_ENV}={os.environ[KAFKA_ENV]} "
            f"points at an external server: unset {KAFKA_ENV} to run it against a local broker",
            pytrace=False,
        )
    if choice == "docker":
        pytest.fail(
            "this test controls the broker process, but this session runs Kafka in a Docker "
            f"container (a Docker engine is reachable): set {INFRA_ENV}=local to run it against "
            "a local broker",
            pytrace=False,
        )
    return cast(KafkaBroker, request.getfixturevalue("_clinic_local_kafka"))


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
def postgres_cluster(_clinic_local_launchers: Launchers) -> Iterator[PostgresServer]:
    """A server with ``create_database``/``dsn``/``raw_dsn``: external (env), a container or a
    local cluster."""
    with _fail_on_bad_choice():  # raised before the yield only
        with postgres_server(os.environ, _clinic_local_launchers) as postgres:
            yield postgres


@pytest.fixture
def fresh_pg_database(postgres_cluster: PostgresServer) -> Iterator[str]:
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

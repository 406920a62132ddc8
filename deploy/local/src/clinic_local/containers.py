"""Kafka and PostgreSQL in Docker containers (testcontainers), for machines with an engine.

The test fixtures use these only when a Docker engine answers (see
:mod:`clinic_local.pytest_plugin`). ``testcontainers`` and ``docker`` are test dependencies of
the workspace, not of this package: they are imported when first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from clinic_local.postgres import SERVER_SETTINGS, ExternalPostgres

# Confluent Platform 7.6 is Apache Kafka 3.6, run in KRaft mode (testcontainers needs >= 7.0 for it)
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
# the official image ships the contrib extensions, btree_gist among them
POSTGRES_IMAGE = "postgres:16"
POSTGRES_USER = "postgres"
POSTGRES_PASSWORD = "postgres"  # a throwaway server reachable from this machine only
DOCKER_PING_TIMEOUT = 3.0
KAFKA_START_TIMEOUT = 180  # seconds, after the image is pulled

_Server = TypeVar("_Server", bound="_Container")


class DockerClientLike(Protocol):
    def ping(self) -> bool: ...

    def close(self) -> None: ...


class KafkaContainerLike(Protocol):
    """What is used of ``testcontainers.community.kafka.KafkaContainer``."""

    def start(self, timeout: int = ...) -> object: ...

    def get_bootstrap_server(self) -> str: ...

    def stop(self) -> None: ...


class PostgresContainerLike(Protocol):
    """What is used of ``testcontainers.community.postgres.PostgresContainer``."""

    def start(self) -> object: ...

    def get_connection_url(self, host: Any = ..., driver: Any = ...) -> str: ...

    def stop(self) -> None: ...


def docker_problem(
    client_factory: Callable[..., DockerClientLike] | None = None,
    timeout: float = DOCKER_PING_TIMEOUT,
) -> str | None:
    """``None`` when a Docker engine answers ``ping()``, otherwise why not (any error counts).

    ``client_factory`` defaults to ``docker.from_env`` (``DOCKER_HOST`` or the default socket);
    it is called with ``timeout=`` so an engine that does not answer costs at most that long.
    """
    try:
        if client_factory is None:
            import docker

            client_factory = docker.from_env
        client = client_factory(timeout=timeout)
        try:
            if not client.ping():
                return "ping() did not return OK"
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def new_kafka_container() -> KafkaContainerLike:
    from testcontainers.community.kafka import KafkaContainer

    container: KafkaContainerLike = KafkaContainer(KAFKA_IMAGE).with_kraft()
    return container


def new_postgres_container() -> PostgresContainerLike:
    from testcontainers.community.postgres import PostgresContainer

    # the same speed settings as the local cluster; the image already listens on all addresses
    flags = [
        f"-c {key}={value}" for key, value in SERVER_SETTINGS.items() if key != "listen_addresses"
    ]
    container: PostgresContainerLike = PostgresContainer(
        POSTGRES_IMAGE,
        username=POSTGRES_USER,
        password=POSTGRES_PASSWORD,
        dbname="postgres",
        driver=None,
    ).with_command(" ".join(["postgres", *flags]))
    return container


class _Container:
    """A started container's server: ``stop()`` removes the container."""

    container: Any

    def _hold(self, container: Any) -> None:
        self.container = container
        self._running = True

    @property
    def is_running(self) -> bool:
        return self._running

    def stop(self) -> None:
        self._running = False
        self.container.stop()


@contextmanager
def _removed_afterwards(
    container: Any, start: Callable[[], object], server_of: Callable[[], _Server]
) -> Iterator[_Server]:
    """Start ``container``, yield its server, remove it afterwards (also when the start failed)."""
    server: _Server | None = None
    try:
        start()
        server = server_of()
        yield server
    finally:
        if server is not None:
            server.stop()
        else:
            container.stop()


class KafkaInContainer(_Container):
    """A Kafka container: ``bootstrap_servers`` once started."""

    def __init__(self, container: KafkaContainerLike) -> None:
        self._hold(container)
        self.bootstrap_servers = container.get_bootstrap_server()

    @classmethod
    def running(
        cls, container: KafkaContainerLike, timeout: int = KAFKA_START_TIMEOUT
    ) -> AbstractContextManager[KafkaInContainer]:
        return _removed_afterwards(
            container, lambda: container.start(timeout=timeout), lambda: cls(container)
        )

    def __repr__(self) -> str:
        return f"KafkaInContainer({self.bootstrap_servers})"


class PostgresInContainer(_Container, ExternalPostgres):
    """:class:`ExternalPostgres` pointed at a started container."""

    def __init__(self, container: PostgresContainerLike) -> None:
        super().__init__(container.get_connection_url(driver=None))
        self._hold(container)

    @classmethod
    def running(
        cls, container: PostgresContainerLike
    ) -> AbstractContextManager[PostgresInContainer]:
        return _removed_afterwards(container, container.start, lambda: cls(container))

    def __repr__(self) -> str:
        return "PostgresInContainer" + super().__repr__().removeprefix("ExternalPostgres")

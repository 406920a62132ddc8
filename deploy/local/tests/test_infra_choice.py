"""Where the session's Kafka and PostgreSQL come from: settings, Docker (testcontainers), local.

The choice runs through the plugin's real code: the docker SDK probe, ``choose_infra``, the
``kafka_server``/``postgres_server`` context managers behind the fixtures, and (in child pytest
runs) the fixtures themselves. Docker engines and containers are faked where the test needs one,
so nothing here starts a broker or a database.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clinic_local.containers import KafkaInContainer, PostgresInContainer, docker_problem
from clinic_local.postgres import ExternalPostgres
from clinic_local.pytest_plugin import (
    INFRA_ENV,
    KAFKA_ENV,
    POSTGRES_ENV,
    ExternalKafka,
    InfraChoiceError,
    Launchers,
    choose_infra,
    kafka_server,
    postgres_server,
)

Log = Callable[[str], None]

CONTAINER_BOOTSTRAP = "docker-host.test:32792"
CONTAINER_PG_URL = "postgresql://postgres:secret@docker-host.test:32793/postgres"
LOCAL_BOOTSTRAP = "127.0.0.1:39092"


# --------------------------------------------------------------------------- fakes


class FakeDocker:
    """Stands in for ``docker.from_env``: ``FakeDocker(log)(timeout=...)`` is the client."""

    def __init__(self, log: Log, ping: bool | Exception = True) -> None:
        self.log = log
        self.answer = ping

    def __call__(self, *, timeout: float) -> FakeDocker:
        self.log(f"docker client timeout={timeout}")
        return self

    def ping(self) -> bool:
        self.log("docker ping")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.log("docker client closed")


class FakeKafkaContainer:
    """The parts of testcontainers' ``KafkaContainer`` the plugin uses."""

    def __init__(self, log: Log, start_error: Exception | None = None) -> None:
        self.log = log
        self.start_error = start_error

    def start(self, timeout: int = 30) -> FakeKafkaContainer:
        self.log(f"kafka container start timeout={timeout}")
        if self.start_error is not None:
            raise self.start_error
        return self

    def get_bootstrap_server(self) -> str:
        return CONTAINER_BOOTSTRAP

    def stop(self) -> None:
        self.log("kafka container stop")


class FakePostgresContainer:
    """The parts of testcontainers' ``PostgresContainer`` the plugin uses."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def start(self) -> FakePostgresContainer:
        self.log("postgres container start")
        return self

    def get_connection_url(self, host: str | None = None, driver: str | None = "psycopg2") -> str:
        if driver is None:
            return CONTAINER_PG_URL
        return CONTAINER_PG_URL.replace("postgresql://", f"postgresql+{driver}://", 1)

    def stop(self) -> None:
        self.log("postgres container stop")


class FakeLocalBroker:
    bootstrap_servers = LOCAL_BOOTSTRAP

    def __init__(self, data_dir: Path, log: Log) -> None:
        self.data_dir = data_dir
        self.log = log

    def start(self) -> None:
        self.log(f"local kafka start in {self.data_dir.name}")

    def stop(self) -> None:
        self.log("local kafka stop")


class FakeLocalCluster:
    def __init__(self, log: Log) -> None:
        self.log = log

    def start(self) -> None:
        self.log("local postgres start")

    def stop(self) -> None:
        self.log("local postgres stop")

    def cleanup(self) -> None:
        self.log("local postgres cleanup")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:35432/{dbname}"


def forbidden(what: str) -> Callable[..., Any]:
    def call(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"{what} must not be used here")

    return call


def fake_launchers(log: Log, *, engine: bool | None) -> Launchers:
    """Fake containers and local launchers; the probe is the real ``docker_problem`` over a
    fake client that answers (``engine=True``) or fails (``False``), or over the real docker
    SDK (``None``)."""
    if engine is None:
        probe: Callable[[], str | None] = docker_problem
    else:
        ping = True if engine else ConnectionError("engine gone")
        probe = functools.partial(docker_problem, FakeDocker(log, ping))
    return Launchers(
        probe_docker=functools.cache(probe),  # asked once, as the real fixture does
        kafka_container=lambda: FakeKafkaContainer(log),
        postgres_container=lambda: FakePostgresContainer(log),
        local_kafka=lambda data_dir: FakeLocalBroker(data_dir, log),
        local_postgres=lambda: FakeLocalCluster(log),
    )


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``DOCKER_HOST`` at a socket nobody serves: the real docker SDK finds no engine."""
    host = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


# --------------------------------------------------------------------------- the probe


def test_the_docker_probe_reports_a_missing_engine_through_the_real_sdk(no_engine: str) -> None:
    problem = docker_problem()
    assert problem is not None
    assert "DockerException" in problem


def test_the_docker_probe_gives_up_on_a_silent_engine_within_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        began = time.monotonic()
        problem = docker_problem(timeout=0.5)
        elapsed = time.monotonic() - began
    assert problem is not None and "timed out" in problem
    assert elapsed < 5


def test_the_docker_probe_asks_the_client_with_a_short_timeout_and_closes_it() -> None:
    log: list[str] = []
    assert docker_problem(FakeDocker(log.append)) is None
    assert log == ["docker client timeout=3.0", "docker ping", "docker client closed"]

    log.clear()
    problem = docker_problem(FakeDocker(log.append, PermissionError("docker.sock: denied")))
    assert problem == "PermissionError: docker.sock: denied"
    assert log[-1] == "docker client closed"
    assert docker_problem(FakeDocker(log.append, ping=False)) == "ping() did not return OK"


# --------------------------------------------------------------------------- the choice


def test_auto_without_a_docker_engine_chooses_the_local_launchers(
    no_engine: str, tmp_path: Path
) -> None:
    assert choose_infra({}, KAFKA_ENV, docker_problem) == "local"
    assert choose_infra({INFRA_ENV: "auto"}, POSTGRES_ENV, docker_problem) == "local"

    log: list[str] = []
    launchers = fake_launchers(log.append, engine=None)  # the real SDK finds no engine
    with kafka_server({}, launchers, lambda: tmp_path / "kafka-data") as kafka:
        assert isinstance(kafka, FakeLocalBroker)
        assert kafka.bootstrap_servers == LOCAL_BOOTSTRAP
        with postgres_server({}, launchers) as postgres:
            assert isinstance(postgres, FakeLocalCluster)
    assert log == [
        "local kafka start in kafka-data",
        "local postgres start",
        "local postgres stop",
        "local postgres cleanup",
        "local kafka stop",
    ]


def test_auto_with_a_docker_engine_runs_containers_and_removes_them_afterwards(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    launchers = fake_launchers(log.append, engine=True)
    with kafka_server({}, launchers, forbidden("a local data dir")) as kafka:
        assert isinstance(kafka, KafkaInContainer)
        assert kafka.bootstrap_servers == CONTAINER_BOOTSTRAP
        assert kafka.is_running
        assert "kafka container start timeout=180" in log
    assert log[-1] == "kafka container stop"
    assert not kafka.is_running

    log.clear()
    with postgres_server({INFRA_ENV: "docker"}, launchers) as postgres:
        assert isinstance(postgres, PostgresInContainer)
        assert isinstance(postgres, ExternalPostgres)  # the same interface as an external server
        assert postgres.is_running
        assert postgres.raw_dsn() == CONTAINER_PG_URL
        assert postgres.dsn("booking") == (
            "postgresql+asyncpg://postgres:secret@docker-host.test:32793/booking"
        )
        assert postgres.raw_dsn("t_1") == "postgresql://postgres:secret@docker-host.test:32793/t_1"
    assert log[-1] == "postgres container stop"
    assert not postgres.is_running
    assert not any("local" in line for line in log)


def test_a_container_that_fails_to_start_is_still_removed() -> None:
    log: list[str] = []
    container = FakeKafkaContainer(log.append, start_error=RuntimeError("pull denied"))
    launchers = Launchers(
        probe_docker=lambda: None,
        kafka_container=lambda: container,
        local_kafka=forbidden("the local broker"),
    )
    with pytest.raises(RuntimeError, match="pull denied"):
        with kafka_server({}, launchers, forbidden("a local data dir")):
            pass
    assert log == ["kafka container start timeout=180", "kafka container stop"]


@pytest.mark.parametrize("mode", ["auto", "local", "docker"])
def test_settings_pointing_at_existing_servers_win_over_everything(mode: str) -> None:
    env = {
        INFRA_ENV: mode,
        KAFKA_ENV: "kafka.example.internal:19092",
        POSTGRES_ENV: "postgresql://clinic@db.example.internal:15432/postgres",
    }
    launchers = Launchers(
        probe_docker=forbidden("the docker probe"),
        kafka_container=forbidden("a kafka container"),
        postgres_container=forbidden("a postgres container"),
        local_kafka=forbidden("the local broker"),
        local_postgres=forbidden("the local cluster"),
    )
    with kafka_server(env, launchers, forbidden("a local data dir")) as kafka:
        assert kafka == ExternalKafka("kafka.example.internal:19092")
    with postgres_server(env, launchers) as postgres:
        assert type(postgres) is ExternalPostgres
        assert postgres.dsn("booking") == (
            "postgresql+asyncpg://clinic@db.example.internal:15432/booking"
        )


def test_each_server_is_chosen_on_its_own() -> None:
    log: list[str] = []
    env = {KAFKA_ENV: "kafka.example.internal:19092"}
    launchers = fake_launchers(log.append, engine=True)
    with kafka_server(env, launchers, forbidden("a local data dir")) as kafka:
        assert kafka == ExternalKafka("kafka.example.internal:19092")
    with postgres_server(env, launchers) as postgres:
        assert isinstance(postgres, PostgresInContainer)
    assert "kafka container start timeout=180" not in log
    assert "postgres container start" in log


def test_docker_forced_without_an_engine_fails_with_the_reason(no_engine: str) -> None:
    with pytest.raises(InfraChoiceError) as raised:
        choose_infra({INFRA_ENV: "docker"}, KAFKA_ENV, docker_problem)
    message = str(raised.value)
    assert message.startswith("CLINIC_TEST_INFRA=docker, but no Docker engine is reachable (")
    assert "DockerException" in message  # the probe's reason
    assert "unset CLINIC_TEST_INFRA to use the local launchers" in message

    launchers = Launchers(
        local_kafka=forbidden("the local broker"), local_postgres=forbidden("the local cluster")
    )
    with pytest.raises(InfraChoiceError), postgres_server({INFRA_ENV: "Docker "}, launchers):
        pass


def test_local_forced_never_asks_docker() -> None:
    assert choose_infra({INFRA_ENV: "local"}, KAFKA_ENV, forbidden("the docker probe")) == "local"


def test_an_unknown_infra_setting_is_an_error() -> None:
    with pytest.raises(InfraChoiceError, match="'podman' is not one of auto, local, docker"):
        choose_infra({INFRA_ENV: "podman"}, KAFKA_ENV, lambda: None)


# --------------------------------------------------------------------------- the fixtures

CONFTEST = """
import importlib.util
import os

import pytest

spec = importlib.util.spec_from_file_location("infra_fakes", os.environ["INFRA_FAKES"])
fakes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fakes)


def log(line):
    with open(os.environ["INFRA_LOG"], "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


ENGINE = {"yes": True, "no": False, "sdk": None}[os.environ["INFRA_ENGINE"]]


@pytest.fixture(scope="session")
def _clinic_local_launchers():
    return fakes.fake_launchers(log, engine=ENGINE)
"""

PROBE = """
import os


def log(line):
    with open(os.environ["INFRA_LOG"], "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


def test_servers(kafka_bootstrap, postgres_cluster):
    log(f"test got kafka {kafka_bootstrap}")
    log(f"test got postgres {postgres_cluster.dsn('booking')}")


def test_broker(kafka_broker):
    log(f"test got broker {kafka_broker.bootstrap_servers}")
"""


PROBE_REAL = """
def test_kafka(kafka_bootstrap):
    pass


def test_postgres(postgres_cluster):
    pass
"""


def run_session(tmp_path: Path, engine: str, **settings: str) -> tuple[str, list[str]]:
    """A child pytest session on the plugin; ``engine`` ``yes``/``no`` fakes the docker client,
    ``real`` keeps the real launchers (no conftest), ``sdk`` fakes only the launchers."""
    if engine == "real":
        (tmp_path / "test_probe.py").write_text(PROBE_REAL)
    else:
        (tmp_path / "test_probe.py").write_text(PROBE)
        (tmp_path / "conftest.py").write_text(CONFTEST)
    log = tmp_path / "events.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (INFRA_ENV, KAFKA_ENV, POSTGRES_ENV)
    }
    env.update(INFRA_FAKES=__file__, INFRA_LOG=str(log), INFRA_ENGINE=engine, **settings)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only this plugin: the child starts in ~1 s
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "clinic_local.pytest_plugin",
            "-rfE",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = log.read_text().splitlines() if log.exists() else []
    return result.stdout, events


def test_fixtures_use_containers_when_an_engine_answers_and_remove_them_at_the_end(
    tmp_path: Path,
) -> None:
    stdout, events = run_session(tmp_path, "yes")
    assert "1 passed, 1 error" in stdout, stdout
    assert "this session runs Kafka in a Docker container" in stdout
    assert "skipped" not in stdout
    assert events == [
        "docker client timeout=3.0",
        "docker ping",
        "docker client closed",
        "kafka container start timeout=180",
        "postgres container start",
        f"test got kafka {CONTAINER_BOOTSTRAP}",
        "test got postgres postgresql+asyncpg://postgres:secret@docker-host.test:32793/booking",
        "postgres container stop",
        "kafka container stop",
    ]


@pytest.mark.parametrize("engine", ["no", "sdk"])
def test_fixtures_use_the_local_launchers_when_no_engine_answers(
    tmp_path: Path, engine: str, no_engine: str
) -> None:
    stdout, events = run_session(tmp_path, engine, DOCKER_HOST=no_engine)
    assert "2 passed" in stdout, stdout
    local = [line for line in events if not line.startswith("docker")]
    assert local == [
        "local kafka start in kafka0",
        "local postgres start",
        f"test got kafka {LOCAL_BOOTSTRAP}",
        "test got postgres postgresql+asyncpg://postgres@127.0.0.1:35432/booking",
        f"test got broker {LOCAL_BOOTSTRAP}",
        "local postgres stop",
        "local postgres cleanup",
        "local kafka stop",
    ]


def test_fixtures_fail_with_the_reason_when_docker_is_forced_without_an_engine(
    tmp_path: Path, no_engine: str
) -> None:
    stdout, events = run_session(
        tmp_path, "real", CLINIC_TEST_INFRA="docker", DOCKER_HOST=no_engine
    )
    assert "2 errors" in stdout, stdout  # errors, never skips
    assert "skipped" not in stdout
    for test in ("test_kafka", "test_postgres"):
        assert f"ERROR test_probe.py::{test} - Failed: CLINIC_TEST_INFRA=docker, but no" in stdout
    assert "no Docker engine is reachable (DockerException: " in stdout
    assert events == []

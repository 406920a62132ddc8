"""Apache Kafka in KRaft mode, without Docker: Maven Central jars and a plain JVM process.

Version: Kafka 4.3.1 (logging through Log4j 2). It is the newest 4.x release that Maven Central
serves completely: 4.4.0 is listed there but ``org.apache.kafka:kafka-tools-api:4.4.0`` is missing,
so its dependencies cannot be resolved. aiokafka 0.14 was checked against 4.3.1: idempotent
producer (``acks="all"``, ``enable_idempotence=True``), consumer group with manual commit and
``AIOKafkaAdminClient.create_topics`` all work (see ``deploy/local/tests/test_local_infra.py``).
Kafka 3.9.x remains supported (``version="3.9.1"``: logging through reload4j).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from clinic_local._util import file_lock, free_port, log_tail, marker_matches, run_sync

DEFAULT_KAFKA_VERSION = "4.3.1"
POM_PATH = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"
JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_STATE_FILE = "clinic-kafka.json"
_MARKER = ".complete"
_TOPIC_ALREADY_EXISTS = 36

_LOG4J2_CONFIG = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""

_LOG4J1_CONFIG = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


class KafkaLaunchError(RuntimeError):
    """The broker could not be fetched, formatted or started."""


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


# --------------------------------------------------------------------------- jars


def cache_dir(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Where the jars of ``version`` live: ``$CLINIC_KAFKA_CACHE`` or ~/.cache/clinic/kafka-V."""
    override = os.environ.get("CLINIC_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "clinic" / f"kafka-{version}"


def ensure_jars(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Fetch the broker's jars once (idempotent, safe to interrupt); return the libs dir.

    The jars are copied into a temporary directory that is renamed into place, and a marker
    naming the version is written last; concurrent callers serialise on a lock file.
    """
    root = cache_dir(version)
    libs = root / "libs"
    marker = root / _MARKER
    if marker_matches(marker, version) and libs.is_dir():
        return libs
    with file_lock(root.parent / f".{root.name}.lock"):
        if marker_matches(marker, version) and libs.is_dir():
            return libs
        root.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        for stale in root.glob("libs.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f"libs.tmp-{os.getpid()}"
        _run_maven(version, tmp)
        if libs.exists():
            shutil.rmtree(libs)
        tmp.rename(libs)
        marker.write_text(version, encoding="utf-8")
    return libs


def _run_maven(version: str, output_dir: Path) -> None:
    if not POM_PATH.is_file():
        raise KafkaLaunchError(f"Maven project not found at {POM_PATH}")
    if shutil.which("mvn") is None:
        raise KafkaLaunchError("`mvn` is not on PATH: Maven 3.8+ is needed to fetch Kafka")
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        f"-Dkafka.version={version}",
    ]
    if _major(version) < 4:
        cmd.append("-Pkafka3")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(output_dir.glob("kafka_2.13-*.jar")):
        shutil.rmtree(output_dir, ignore_errors=True)
        raise KafkaLaunchError(
            f"fetching Kafka {version} jars failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


# --------------------------------------------------------------------------- topics


async def ensure_topics_async(
    bootstrap: str, topics: list[str], partitions: int = 3, replication_factor: int = 1
) -> None:
    """Create the topics that do not exist yet (existing ones are left alone)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor)
                for t in missing
            ]
        )
        failures = [
            (err[0], err[1])
            for err in response.topic_errors
            if err[1] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise KafkaLaunchError(f"creating topics failed (topic, error code): {failures}")
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3) -> None:
    """Synchronous wrapper of :func:`ensure_topics_async`."""
    run_sync(ensure_topics_async(bootstrap, topics, partitions))


def _accepts_tcp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _lists_topics(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# --------------------------------------------------------------------------- broker


def _new_cluster_id() -> str:
    """A Kafka ``Uuid`` in its base64 form (like ``StorageTool random-uuid``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker:
    """A single-node Kafka (combined broker + controller) whose data lives in ``data_dir``.

    The cluster id and ports are kept in ``data_dir`` so that a broker started again on the same
    directory (in this process or a later one) keeps its address and its data.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        version: str = DEFAULT_KAFKA_VERSION,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        self.version = version
        self.cluster_id: str = str(state.get("cluster_id") or _new_cluster_id())
        self.port: int = int(port or state.get("port") or free_port())
        self.controller_port: int = int(
            controller_port or state.get("controller_port") or free_port()
        )
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._save_state()
        atexit.register(self.kill)

    # ---- paths and state
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.out"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _load_state(self) -> dict[str, int | str]:
        path = self.data_dir / _STATE_FILE
        if not path.is_file():
            return {}
        loaded: dict[str, int | str] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    def _save_state(self) -> None:
        state = {
            "cluster_id": self.cluster_id,
            "port": self.port,
            "controller_port": self.controller_port,
            "version": self.version,
        }
        (self.data_dir / _STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    # ---- configuration
    def _server_properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "auto.create.topics.enable": "true",
            "group.initial.rebalance.delay.ms": "0",
            # after a kill the controller waits for the old broker session to expire before
            # the restarted broker is unfenced: keep that short (defaults 9000 / 2000)
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        if _major(self.version) >= 4:
            props["share.coordinator.state.topic.replication.factor"] = "1"
            props["share.coordinator.state.topic.min.isr"] = "1"
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _write_config(self) -> list[str]:
        """Write server.properties and the logging config; return the logging JVM flags."""
        self.properties_file.write_text(self._server_properties(), encoding="utf-8")
        if _major(self.version) >= 4:
            log_cfg = self.data_dir / "log4j2.properties"
            log_cfg.write_text(_LOG4J2_CONFIG, encoding="utf-8")
            return [f"-Dlog4j2.configurationFile={log_cfg}"]
        log_cfg = self.data_dir / "log4j.properties"
        log_cfg.write_text(_LOG4J1_CONFIG, encoding="utf-8")
        return [f"-Dlog4j.configuration=file:{log_cfg}"]

    def _java(self, libs: Path, logging_flags: list[str], *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaLaunchError("`java` is not on PATH: Java 17+ is needed to run Kafka")
        return [
            java,
            *JVM_OPTS,
            *logging_flags,
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def _format_storage(self, libs: Path, logging_flags: list[str]) -> None:
        if (self.log_dirs / "meta.properties").is_file():
            return
        cmd = self._java(
            libs,
            logging_flags,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.properties_file),
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaLaunchError(
                f"kafka-storage format failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )

    # ---- lifecycle
    def start(self, timeout: float = 90) -> None:
        """Fetch jars if needed, format storage once, start the JVM and wait until it serves."""
        if self.is_running:
            return
        deadline = time.monotonic() + timeout
        libs = ensure_jars(self.version)
        logging_flags = self._write_config()
        self._format_storage(libs, logging_flags)
        cmd = self._java(libs, logging_flags, "kafka.Kafka", str(self.properties_file))
        with self.log_file.open("ab") as out:
            out.write(f"\n==== starting Kafka {self.version} at {time.ctime()}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise KafkaLaunchError(
                    f"Kafka exited with {code} during start-up; log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            # the TCP check keeps aiokafka from logging connection errors while the JVM boots
            if _accepts_tcp(self.port) and run_sync(_lists_topics(self.bootstrap_servers)):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise KafkaLaunchError(
                    f"Kafka did not serve on {self.bootstrap_servers} in time; "
                    f"log {self.log_file}:\n{log_tail(self.log_file)}"
                )
            time.sleep(0.2)  # polling interval, the deadline above bounds the wait

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker (a crash: the next start recovers the logs)."""
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._proc = None

    def restart(self, timeout: float = 90) -> None:
        self.stop()
        self.start(timeout=timeout)

    # ---- for async callers (tests with a running event loop): run in a worker thread
    async def start_async(self, max_wait: float = 90) -> None:
        await asyncio.to_thread(self.start, max_wait)

    async def stop_async(self, max_wait: float = 30) -> None:
        await asyncio.to_thread(self.stop, max_wait)

    async def kill_async(self) -> None:
        await asyncio.to_thread(self.kill)

    async def restart_async(self, max_wait: float = 90) -> None:
        await asyncio.to_thread(self.restart, max_wait)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"KafkaBroker({self.bootstrap_servers}, {self.version}, {state}, {self.data_dir})"


def main(argv: list[str] | None = None) -> None:
    """`python -m clinic_local.kafka fetch`: download the broker's jars into the cache once."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m clinic_local.kafka")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--version", default=DEFAULT_KAFKA_VERSION)
    args = parser.parse_args(argv)
    print(f"Kafka {args.version} jars in {ensure_jars(args.version)}")


if __name__ == "__main__":
    main()

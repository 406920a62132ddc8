"""`clinic run`: the whole system on one machine, no Docker, no configuration.

Starts the local Apache Kafka broker (its data kept in the data directory, so a restart loses
nothing), migrates one SQLite file per service, seeds the demo clinic, then runs each service's
roles (ROLES: every service's api, consumer and relay, and the dispatchers of waitlist, billing
and notify, which run their due-queues) as child processes. Waitlist, billing and notify find
booking's internal API through <SERVICE>_BOOKING_URL, booking's local port unless set. Billing
charges the card sandbox (test cards only) unless BILLING_GATEWAY says otherwise, and checks
its webhooks with a secret generated once for the data directory. Notify writes e-mail, texts
and push messages to files under `<data dir>/notify-outbox` unless NOTIFY_SMTP_HOST or
NOTIFY_SMS_PROVIDER say otherwise, and checks inbound texts' signatures with a token generated
once for the data directory. Ctrl-C (or
SIGTERM) stops the children, then the broker, and exits 0. A child that dies on its own stops
the whole system with exit code 1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from clinic_local.kafka import KafkaBroker
from clinic_shared.contracts.registry import TOPICS
from clinic_shared.kafka import ensure_topics

SERVICES = ("booking", "waitlist", "billing", "notify")
# The long-lived processes of each service: `python -m <service> <role>`. Only a service with
# due-queues (durable, time-driven work in its database) offers `dispatcher`.
ROLES: dict[str, tuple[str, ...]] = {
    "booking": ("api", "consumer", "relay"),
    "waitlist": ("api", "consumer", "relay", "dispatcher"),
    "billing": ("api", "consumer", "relay", "dispatcher"),
    "notify": ("api", "consumer", "relay", "dispatcher"),
}
STOP_GRACE_SECONDS = 20.0
DEMO_PATIENT_ID = "00000000-0000-4000-8000-000000000001"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def jwt_secret(data_dir: Path) -> str:
    """The signing secret: from CLINIC_JWT_SECRET, else one generated once for this data dir."""
    return os.environ.get("CLINIC_JWT_SECRET") or generated_secret(data_dir, "jwt-secret")


def generated_secret(data_dir: Path, name: str) -> str:
    """A secret made once for this data directory (mode 0600), never kept in the repository."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def service_environment(
    data_dir: Path, bootstrap: str, secret: str, port_base: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CLINIC_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLINIC_JWT_SECRET": secret,
            "PYTHONUNBUFFERED": "1",
        }
    )
    for index, service in enumerate(SERVICES, start=1):
        prefix = service.upper()
        env.setdefault(f"{prefix}_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / service}.db")
        env[f"{prefix}_HTTP_PORT"] = str(port_base + index)
    # Waitlist, billing and notify look patients up through booking's internal API.
    booking_url = f"http://127.0.0.1:{env['BOOKING_HTTP_PORT']}"
    for service in ("WAITLIST", "BILLING", "NOTIFY"):
        env.setdefault(f"{service}_BOOKING_URL", booking_url)
    env.setdefault("BILLING_SANDBOX_STORE", str(data_dir / "card-sandbox.db"))
    env.setdefault("BILLING_WEBHOOK_SECRET", generated_secret(data_dir, "webhook-secret"))
    env.setdefault("NOTIFY_OUTBOX_DIR", str(data_dir / "notify-outbox"))
    env.setdefault("NOTIFY_SMS_AUTH_TOKEN", generated_secret(data_dir, "sms-auth-token"))
    return env


def _python(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", service, *args]


def prepare(env: dict[str, str], bootstrap: str) -> None:
    for service in SERVICES:
        subprocess.run(_python(service, "migrate"), env=env, check=True)
    asyncio.run(ensure_topics(bootstrap, sorted(TOPICS.values())))
    subprocess.run(_python("booking", "seed"), env=env, check=True)


def start_children(env: dict[str, str]) -> list[Child]:
    return [
        Child(
            f"{service}-{role}",
            subprocess.Popen(_python(service, role), env=env, start_new_session=True),
        )
        for service in SERVICES
        for role in ROLES[service]
    ]


def wait_ready(port_base: int, children: list[Child], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = {f"http://127.0.0.1:{port_base + i}/readyz" for i in range(1, len(SERVICES) + 1)}
    with httpx.Client(timeout=3.0) as client:
        while pending:
            for child in children:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
            for url in list(pending):
                try:
                    if client.get(url).status_code == 200:
                        pending.discard(url)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {sorted(pending)}")
            if pending:
                time.sleep(0.25)  # polling interval while waiting for the APIs to come up


def stop_children(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"clinic: {child.name} did not stop in time; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()


def banner(port_base: int, data_dir: Path) -> str:
    lines = ["", "clinic: the demo clinic is running", ""]
    for index, service in enumerate(SERVICES, start=1):
        lines.append(f"  {service:<9} http://127.0.0.1:{port_base + index}/docs")
    lines += [
        "",
        f"  data:     {data_dir}",
        "  tokens:   uv run clinic token --role scheduler",
        f"            uv run clinic token --role patient --patient {DEMO_PATIENT_ID}",
        "  stop:     Ctrl-C",
        "",
    ]
    return "\n".join(lines)


def run(data_dir: Path, port_base: int = 8000, kafka_port: int | None = None) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop_requested = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    secret = jwt_secret(data_dir)
    broker = KafkaBroker(data_dir / "kafka", port=kafka_port)
    children: list[Child] = []
    exit_code = 0
    try:
        broker.start()
        env = service_environment(data_dir, broker.bootstrap_servers, secret, port_base)
        prepare(env, broker.bootstrap_servers)
        children = start_children(env)
        wait_ready(port_base, children)
        print(banner(port_base, data_dir), flush=True)
        while not stop_requested:
            crashed = [c for c in children if c.process.poll() is not None]
            if crashed:
                names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in crashed)
                print(f"clinic: stopping because {names} stopped", file=sys.stderr)
                exit_code = 1
                break
            time.sleep(0.5)  # supervision tick: nothing to wait on but child exits and signals
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"clinic: {exc}", file=sys.stderr)
        exit_code = 1
    finally:
        stop_children(children)
        broker.stop()
    print("clinic: stopped", flush=True)
    return exit_code

"""The services as real processes for the benchmarks, set up as the e2e tests set them up.

One PostgreSQL database per service, migrated by `python -m <service> migrate`; each process
is `python -m <service> <command>` (`clinic_local.processes.ServiceProcess`) with
`CLINIC_KAFKA_BOOTSTRAP_SERVERS`, `CLINIC_JWT_SECRET`, `CLINIC_POLICY_FILE`,
`<SERVICE>_DATABASE_URL`, `<SERVICE>_HTTP_PORT`, the other services' `*_BOOKING_URL` and the
local sinks of billing (card sandbox) and notify (files). Every other setting is the service's
default (the e2e tests shorten some poll intervals; the benchmarks do not).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import ROOT, children_of, command_line

from clinic_local._util import free_port
from clinic_local.postgres import PostgresCluster
from clinic_local.processes import ServiceProcess

SERVICES = ("booking", "waitlist", "billing", "notify")


@dataclass
class System:
    """Databases, settings and the service processes a benchmark started."""

    env: dict[str, str]
    urls: dict[str, str]
    database_urls: dict[str, str]
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)

    def start(self, service: str, command: str) -> ServiceProcess:
        process = ServiceProcess(service, command, self.env, self.log_dir).start()
        self.processes.append(process)
        return process

    async def wait_ready(self) -> None:
        """Every started API answers /healthz; fails early when a process dies."""
        apis = [p for p in self.processes if p.command == "api"]
        async with httpx.AsyncClient(timeout=2) as client:
            for api in apis:
                deadline = time.monotonic() + 60
                while True:
                    self.check_alive()
                    try:
                        if (await client.get(self.urls[api.service] + "/healthz")).is_success:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{api.name} not ready:\n{api.log_tail()}")
                    await asyncio.sleep(0.1)

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive:
                raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")

    def pids(self) -> dict[str, int]:
        """`<service>-<command>` -> pid of each running process, found by its command line
        among this process's children (ServiceProcess does not expose its pid)."""
        wanted = {(p.service, p.command): p.name for p in self.processes if p.alive}
        found = {}
        for pid in children_of(os.getpid()):
            argv = command_line(pid)
            if len(argv) >= 4 and argv[1] == "-m" and (argv[2], argv[3]) in wanted:
                found[wanted[(argv[2], argv[3])]] = pid
        missing = set(wanted.values()) - set(found)
        if missing:
            raise RuntimeError(f"no process found for {sorted(missing)}")
        return found

    def stop(self, process: ServiceProcess) -> None:
        process.stop()
        self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


async def migrate(service: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        service,
        "migrate",
        env=os.environ | env | {"CLINIC_LOG_LEVEL": "WARNING"},
        cwd=ROOT,  # `python -m booking` must find the service, not bench/booking.py
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise RuntimeError(f"python -m {service} migrate failed")


async def build_system(
    cluster: PostgresCluster,
    bootstrap: str,
    log_dir: Path,
    *,
    name: str,
    services: tuple[str, ...],
    secret: str,
    policy: Path,
    extra_env: dict[str, str] | None = None,
) -> System:
    """Databases `bench_<name>_<service>`, migrated, and the settings to run `services`."""
    env = {
        "CLINIC_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLINIC_JWT_SECRET": secret,
        "CLINIC_POLICY_FILE": str(policy),
    }
    urls, database_urls = {}, {}
    for service in services:
        url = await cluster.create_database_async(f"bench_{name}_{service}")
        port = free_port()
        env[f"{service.upper()}_DATABASE_URL"] = url
        env[f"{service.upper()}_HTTP_PORT"] = str(port)
        urls[service] = f"http://127.0.0.1:{port}"
        database_urls[service] = url
    if "booking" in services:
        for service in set(services) - {"booking"}:
            env[f"{service.upper()}_BOOKING_URL"] = urls["booking"]
    if "billing" in services:
        env["BILLING_SANDBOX_STORE"] = str(log_dir / "card-sandbox.db")
        env["BILLING_WEBHOOK_SECRET"] = "whsec_bench_" + secret[-16:]
    if "notify" in services:
        env["NOTIFY_OUTBOX_DIR"] = str(log_dir / "notify-outbox")
        env["NOTIFY_SMS_AUTH_TOKEN"] = "bench-sms-" + secret[-16:]
    env |= extra_env or {}
    for service in services:
        await migrate(service, env)
    return System(env, urls, database_urls, log_dir)

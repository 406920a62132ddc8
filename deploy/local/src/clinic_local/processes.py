"""Service processes for the end-to-end and fault tests: start, SIGKILL, SIGTERM, wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class ServiceProcess:
    """`python -m <service> <command>` as a real child process, its output in a log file."""

    def __init__(self, service: str, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.service = service
        self.command = command
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / f"{service}-{command}-{time.monotonic_ns()}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.command}"

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.service, self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a machine dies."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Wait until `url` answers 200, failing early if the process dies."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.alive:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready at {url}:\n{self.log_tail()}")
                time.sleep(0.1)  # readiness poll while the process boots

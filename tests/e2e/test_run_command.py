"""The README's run command: starts everything, serves the thin flow, stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from clinic_shared.auth import Role, issue_token

from .conftest import PATIENT

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_port_base() -> int:
    for _ in range(50):
        base = random.randrange(20000, 40000, 10)
        if all(_port_free(base + i) for i in range(1, 5)):
            return base
    raise RuntimeError("no free port range")


def _wait(predicate, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"run command exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.25)


def test_the_run_command_serves_the_flow_and_stops_cleanly_on_ctrl_c(tmp_path):
    base = _free_port_base()
    data_dir = tmp_path / "clinic"
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [str(REPO / "scripts/run.sh"), "--data-dir", str(data_dir), "--port-base", str(base)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("CLINIC_")},
    )
    urls = {
        name: f"http://127.0.0.1:{base + i}"
        for i, name in enumerate(("booking", "waitlist", "billing", "notify"), start=1)
    }
    client = httpx.Client(timeout=5)
    try:

        def all_ready() -> bool:
            try:
                return all(client.get(u + "/readyz").status_code == 200 for u in urls.values())
            except httpx.HTTPError:
                return False

        _wait(all_ready, 240, "all four /readyz", process)
        secret = (data_dir / "jwt-secret").read_text().strip()
        staff = {"Authorization": f"Bearer {issue_token(secret, Role.SCHEDULER)}"}
        response = client.post(urls["booking"] + "/v1/patients", json=PATIENT, headers=staff)
        assert response.status_code == 201, response.text
        patient_id = response.json()["id"]
        own = {"Authorization": f"Bearer {issue_token(secret, Role.PATIENT, patient_id)}"}

        def welcomed() -> bool:
            got = client.get(
                f"{urls['notify']}/v1/patients/{patient_id}/notifications", headers=own
            )
            return [n["kind"] for n in got.json()["notifications"]] == ["welcome"]

        _wait(welcomed, 30, "the welcome notification", process)
        demo = client.get(
            f"{urls['booking']}/v1/patients/00000000-0000-4000-8000-000000000001", headers=staff
        )
        assert demo.status_code == 200  # the demo clinic was seeded
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    output = (tmp_path / "run.log").read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "clinic: stopped" in output
    assert all(_port_free(base + i) for i in range(1, 5))
    kafka_state = json.loads((data_dir / "kafka" / "clinic-kafka.json").read_text())
    assert _port_free(int(kafka_state["port"]))
    assert (data_dir / "booking.db").exists()

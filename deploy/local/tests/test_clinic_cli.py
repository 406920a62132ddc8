"""`clinic token`: a token signed with the local run's secret, readable by the services."""

from __future__ import annotations

import os
import subprocess
import sys

from clinic_shared.auth import Role, decode_token


def _clinic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinic_local.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_clinic_token_signs_with_the_secret_of_the_local_data_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CLINIC_JWT_SECRET"}
    env["CLINIC_DATA_DIR"] = str(tmp_path)
    patient = _clinic("token", "--role", "patient", "--patient", "p-7", env=env)
    assert patient.returncode == 0, patient.stderr
    secret = (tmp_path / "jwt-secret").read_text().strip()
    principal = decode_token(patient.stdout.strip(), secret)
    assert (principal.role, principal.subject) == (Role.PATIENT, "p-7")
    again = _clinic("token", "--role", "scheduler", env=env)
    assert decode_token(again.stdout.strip(), secret).role is Role.SCHEDULER  # same secret kept


def test_clinic_token_refuses_a_patient_token_without_a_patient(tmp_path):
    env = {**os.environ, "CLINIC_DATA_DIR": str(tmp_path)}
    refused = _clinic("token", "--role", "patient", env=env)
    assert refused.returncode != 0
    assert refused.stdout == ""

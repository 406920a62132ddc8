from datetime import UTC, datetime, timedelta

import pytest

from clinic_shared.auth import Role, decode_token, issue_token, token_cli
from clinic_shared.problems import ProblemError

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_a_token_carries_role_and_patient_id():
    token = issue_token(SECRET, Role.PATIENT, "p-1")
    principal = decode_token(token, SECRET)
    assert principal.role is Role.PATIENT
    assert principal.patient_id == "p-1"
    assert not principal.is_staff
    assert principal.can_see_patient("p-1") and not principal.can_see_patient("p-2")


@pytest.mark.parametrize(
    "token",
    [
        issue_token("another-secret-that-is-long-enough-for-hs256", Role.ADMIN),
        issue_token(SECRET, Role.ADMIN, now=datetime.now(UTC) - timedelta(days=2)),
        "not-a-jwt",
    ],
    ids=["wrong-secret", "expired", "garbage"],
)
def test_bad_tokens_are_refused_with_401(token):
    with pytest.raises(ProblemError) as caught:
        decode_token(token, SECRET)
    assert caught.value.status == 401


def test_a_patient_token_needs_a_patient_id():
    with pytest.raises(ValueError):
        issue_token(SECRET, Role.PATIENT)


def test_the_token_cli_prints_a_verifiable_token(monkeypatch, capsys):
    monkeypatch.setenv("CLINIC_JWT_SECRET", SECRET)
    token_cli(["--role", "patient", "--patient", "p-9"])
    principal = decode_token(capsys.readouterr().out.strip(), SECRET)
    assert (principal.role, principal.subject) == (Role.PATIENT, "p-9")

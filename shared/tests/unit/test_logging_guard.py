import json
import logging

import pytest
import structlog

from clinic_shared.logging import REDACTED, configure_logging, phi_guard, scrub_text


def test_fields_that_carry_personal_or_health_data_are_redacted():
    out = phi_guard(
        None,
        "info",
        {
            "event": "registered",
            "first_name": "Jane",
            "email": "jane@example.org",
            "diagnosis": "F33.1",
            "medications": ["lamotrigine"],
            "patient_id": "5f0c1a52",
            "status": 201,
        },
    )
    assert out["first_name"] == REDACTED
    assert out["email"] == REDACTED
    assert out["diagnosis"] == REDACTED
    assert out["medications"] == REDACTED
    assert out["patient_id"] == "5f0c1a52"
    assert out["status"] == 201


def test_contact_data_and_tokens_hidden_in_free_text_are_masked():
    text = scrub_text(
        "reach jane.doe@example.org or +1 (503) 555-0100, card 4242 4242 4242 4242, "
        "Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig"
    )
    for secret in ("jane.doe@example.org", "555-0100", "4242 4242", "eyJhbGciOi"):
        assert secret not in text


def test_nested_values_are_guarded_too():
    out = phi_guard(None, "info", {"event": "x", "body": {"phone": "+15035550100", "id": "a"}})
    assert out["body"] == {"phone": REDACTED, "id": "a"}


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers, root.level = handlers, level


def test_configured_logs_are_json_with_the_guard_applied(capsys, restore_logging):
    configure_logging("test-service", "INFO", json=True)
    structlog.get_logger().info("hello", last_name="Doe", appointment_id="a1")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "hello"
    assert record["last_name"] == REDACTED
    assert record["appointment_id"] == "a1"
    assert record["service"] == "test-service"

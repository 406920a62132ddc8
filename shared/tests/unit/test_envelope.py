from datetime import UTC, datetime
from uuid import uuid4

import pytest

from clinic_shared.contracts.booking import PatientRegistered
from clinic_shared.contracts.registry import parse_payload
from clinic_shared.envelope import Envelope, MalformedMessage, from_kafka, to_kafka


def _event() -> PatientRegistered:
    return PatientRegistered(
        patient_id=uuid4(),
        registered_at=datetime(2026, 11, 20, 17, 5, tzinfo=UTC),
        registered_by="patient",
    )


def test_envelope_travels_as_cloudevents_binary_mode_with_the_aggregate_id_as_key():
    event = _event()
    envelope = Envelope.wrap(
        event,
        occurred_at=datetime(2026, 11, 20, 17, 5, 1, tzinfo=UTC),
        correlation_id="corr-1",
        causation_id="cause-1",
    )
    key, value, headers = to_kafka(envelope)
    header_map = dict(headers)
    assert key == str(event.patient_id).encode()
    assert header_map["ce_type"] == b"booking.patient.registered.v1"
    assert header_map["ce_id"] == envelope.event_id.encode()
    assert header_map["ce_source"] == b"/clinic/booking"
    assert header_map["ce_specversion"] == b"1.0"
    assert header_map["ce_correlationid"] == b"corr-1"
    assert header_map["content-type"] == b"application/json"
    back = from_kafka(key, value, headers)
    assert back.event_id == envelope.event_id
    assert back.event_type == envelope.event_type
    assert back.producer == "booking"
    assert back.occurred_at == envelope.occurred_at
    assert back.correlation_id == "corr-1"
    assert back.causation_id == "cause-1"
    assert parse_payload(back.event_type, back.payload) == event


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (
            b"not json",
            [
                ("ce_id", b"1"),
                ("ce_type", b"booking.patient.registered.v1"),
                ("ce_source", b"/clinic/booking"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
        ),
        (b"{}", []),
        (None, [("ce_id", b"1"), ("ce_type", b"x")]),
        (
            b"[1, 2]",
            [
                ("ce_id", b"1"),
                ("ce_type", b"booking.patient.registered.v1"),
                ("ce_source", b"/clinic/booking"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
        ),
    ],
)
def test_anything_that_is_not_one_of_our_cloudevents_is_malformed(value, headers):
    with pytest.raises(MalformedMessage):
        from_kafka(b"k", value, headers)


def test_a_payload_that_breaks_its_contract_is_malformed_and_the_error_names_no_values():
    with pytest.raises(MalformedMessage) as caught:
        parse_payload(
            "booking.patient.registered.v1", {"patient_id": "Jane Doe", "registered_by": "patient"}
        )
    assert "Jane" not in str(caught.value)
    assert "patient_id" in str(caught.value)

"""Contracts change only on purpose: every schema has its snapshot, every old sample validates."""

import json

import pytest

from clinic_shared.contracts import CONTRACTS, snapshot


def test_every_contract_schema_matches_its_committed_snapshot():
    assert snapshot.stale_snapshots() == [], (
        "a contract changed without its snapshot: run `uv run python -m "
        "clinic_shared.contracts.snapshot --write` and review the diff"
    )


def test_no_snapshot_outlives_its_contract():
    assert snapshot.orphan_snapshots() == []


def test_every_contract_has_at_least_one_sample():
    sampled = {event_type for event_type, _ in snapshot.samples()}
    assert set(CONTRACTS) <= sampled


@pytest.mark.parametrize(
    ("event_type", "path"), snapshot.samples(), ids=lambda v: getattr(v, "name", v)
)
def test_every_committed_sample_still_validates(event_type, path):
    model = CONTRACTS[event_type]
    model.model_validate(json.loads(path.read_text()))


def test_type_strings_are_explicit_and_versioned():
    for event_type, model in CONTRACTS.items():
        producer, *_middle, version = event_type.split(".")
        assert producer == model.producer
        assert version.startswith("v") and version[1:].isdigit()


def test_a_changed_schema_is_detected(monkeypatch):
    event_type = next(iter(CONTRACTS))
    original = snapshot.current_schema

    def changed(t):
        schema = original(t)
        if t == event_type:
            schema = {**schema, "properties": {**schema["properties"], "extra": {"type": "string"}}}
        return schema

    monkeypatch.setattr(snapshot, "current_schema", changed)
    assert snapshot.stale_snapshots() == [event_type]

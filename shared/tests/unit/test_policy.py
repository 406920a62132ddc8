"""The clinic policy file: SPEC.md's defaults, a clinic's overrides merged over them, and a bad
file refused at start-up with every problem named by its place in the file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from clinic_shared.policy import PolicyError, load_policy, merge, parse_policy

REPO = Path(__file__).resolve().parents[3]


def test_the_defaults_are_the_specs_numbers():
    policy = parse_policy()

    assert policy.clinic.zone == "America/Los_Angeles"
    assert policy.booking.chairs == 4
    assert [(i.open, i.close) for i in policy.booking.opening_hours["mon"]] == [(time(8), time(18))]
    assert [(i.open, i.close) for i in policy.booking.opening_hours["sat"]] == [(time(9), time(14))]
    assert "sun" not in policy.booking.opening_hours
    assert policy.booking.first_visit_minutes == 150
    mood = policy.booking.protocols["mood_induction"]
    assert (mood.infusion_minutes, mood.recovery_minutes) == (60, 30)
    assert (mood.course.count, mood.course.window_days, mood.course.max_per_calendar_week) == (
        6,
        21,
        3,
    )
    pain = policy.booking.protocols["pain_induction"]
    assert (pain.infusion_minutes, pain.recovery_minutes, pain.course.count) == (240, 90, 5)
    assert pain.course.same_start_time
    assert policy.booking.protocols["mood_booster"].course.max_gap_days == 2
    assert policy.booking.protocols["pain_booster"].course.max_gap_days == 3
    assert policy.booking.cancellation.window == timedelta(hours=48)
    assert policy.booking.cancellation.series_release == "auto"
    assert policy.booking.cancellation.no_show_grace_minutes == 15
    assert (policy.fees.late_cancellation_cents, policy.fees.no_show_cents) == (10000, 15000)
    assert policy.waitlist.offer_expiry_minutes == 120
    assert policy.waitlist.short_offer_expiry_minutes == 30
    assert (policy.notify.quiet_hours.start, policy.notify.quiet_hours.end) == (time(21), time(8))
    assert policy.notify.medication_holds["cannabis"].days_before == 3
    assert policy.billing.installment_counts == [3, 6, 12]


def test_a_clinic_file_overrides_only_what_it_names():
    policy = parse_policy(
        "booking:\n  chairs: 6\n  cancellation: {series_release: scheduler_review}\n"
        "fees: {late_cancellation_cents: 7500}\n"
    )

    assert policy.booking.chairs == 6
    assert policy.booking.chair_ids()[-1] == "chair-6"
    assert policy.booking.cancellation.series_release == "scheduler_review"
    assert policy.booking.cancellation.window_hours == 48
    assert policy.fees.late_cancellation_cents == 7500
    assert policy.fees.no_show_cents == 15000


def test_lists_and_values_replace_while_mappings_merge():
    assert merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}}) == {
        "a": {"x": 1, "y": [3]},
        "b": 1,
    }


def test_an_invalid_file_lists_every_problem_by_its_place():
    with pytest.raises(PolicyError) as refused:
        parse_policy(
            "clinic: {zone: Mars/Olympus}\n"
            "booking:\n"
            "  chairs: 0\n"
            "  opening_hours: {mon: [{open: '18:00', close: '08:00'}]}\n"
            "  cancellation: {series_release: sometimes}\n"
            "fees: {no_show_cents: -1}\n",
            source="clinic.yaml",
        )
    message = str(refused.value)
    for place in (
        "clinic.zone",
        "booking.chairs",
        "booking.opening_hours",
        "booking.cancellation.series_release",
        "fees.no_show_cents",
    ):
        assert place in message
    assert message.startswith("clinic.yaml")


def test_unknown_keys_are_refused_rather_than_silently_ignored():
    with pytest.raises(PolicyError, match=r"booking\.chiars"):
        parse_policy("booking: {chiars: 6}\n")


def test_a_course_rule_that_cannot_be_met_is_refused():
    with pytest.raises(PolicyError, match="cannot fit"):
        parse_policy(
            "booking:\n  protocols:\n    mood_induction:\n      course: "
            "{count: 6, window_days: 7, min_gap_days: 2}\n"
        )


def test_a_missing_or_malformed_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("booking: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)


def test_the_offer_expiry_is_shorter_when_the_first_slot_is_within_a_day():
    policy = parse_policy().waitlist
    now = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)

    assert policy.offer_expiry(now, now + timedelta(hours=24)) == timedelta(hours=2)
    assert policy.offer_expiry(now, now + timedelta(hours=23, minutes=59)) == timedelta(minutes=30)


def test_the_example_file_in_deploy_is_valid_and_differs_only_where_it_says():
    example = REPO / "deploy" / "policy" / "clinic-policy.example.yaml"
    policy = load_policy(example)
    assert policy.clinic.name != parse_policy().clinic.name


def test_a_service_refuses_to_start_on_a_bad_policy_file(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("booking: {chairs: none}\n")
    result = subprocess.run(
        [sys.executable, "-m", "booking", "migrate"],
        env={
            "CLINIC_POLICY_FILE": str(bad),
            "PATH": "/usr/bin:/bin",
            "BOOKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "booking.chairs" in result.stderr
    assert not (tmp_path / "b.db").exists()

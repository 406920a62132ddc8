"""Reminder due times on the clinic's clock: the evening before, the fasting window, the ride,
medication holds, quiet hours, and a daylight-saving change in between."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from clinic_shared.policy import parse_policy
from notify.domain.schedule import Appointment, before_quiet_hours, reminders

POLICY = parse_policy().notify
LA = ZoneInfo("America/Los_Angeles")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LA)


def due(appointment: Appointment) -> list[tuple[str, str, str]]:
    return [
        (r.kind, r.step, r.due_at.astimezone(LA).strftime("%m-%d %H:%M"))
        for r in reminders(appointment, POLICY, LA)
    ]


def test_a_midday_infusion_gets_the_evening_fasting_ride_and_window_reminders():
    assert due(Appointment(local("2026-12-03T13:00"), infusion=True)) == [
        ("ride_home", "24h_before", "12-02 13:00"),
        ("fasting", "evening_before", "12-02 18:00"),
        ("fasting", "window_opens", "12-03 09:00"),
    ]


def test_a_fasting_window_opening_in_quiet_hours_is_left_to_the_evening_message():
    found = due(Appointment(local("2026-12-03T09:00"), infusion=True))
    assert ("fasting", "window_opens") not in [(k, s) for k, s, _ in found]
    assert ("fasting", "evening_before", "12-02 18:00") in found


def test_medication_holds_follow_the_intake_classes():
    both = due(
        Appointment(
            local("2026-12-10T13:00"),
            infusion=True,
            medication_classes=frozenset({"benzodiazepine", "cannabis"}),
        )
    )
    holds = [(s, at) for k, s, at in both if k == "medication_hold"]
    assert holds == [("cannabis", "12-07 18:00"), ("benzodiazepine", "12-09 18:00")]
    none = due(Appointment(local("2026-12-10T13:00"), infusion=True))
    assert [k for k, _, _ in none if k == "medication_hold"] == []


def test_reminders_keep_the_clinic_clock_across_a_daylight_saving_change():
    # Sunday 2027-03-14 02:00 PST -> 03:00 PDT; the appointment is that Sunday, 13:00 PDT
    start = local("2027-03-14T13:00")
    found = reminders(Appointment(start, infusion=True), POLICY, LA)
    by_step = {r.step: r.due_at for r in found}
    assert by_step["24h_before"].astimezone(LA) == local("2027-03-13T13:00")
    assert by_step["evening_before"].astimezone(LA) == local("2027-03-13T18:00")
    assert (start.astimezone(UTC) - by_step["24h_before"]).total_seconds() == 23 * 3600
    assert (start.astimezone(UTC) - by_step["window_opens"]).total_seconds() == 4 * 3600


def test_a_message_due_in_quiet_hours_moves_to_just_before_they_begin():
    for late in ("2026-12-02T22:30", "2026-12-03T06:00"):
        moved = before_quiet_hours(local(late), POLICY.quiet_hours, LA)
        assert moved.astimezone(LA) == local("2026-12-02T20:59")
    awake = local("2026-12-03T08:00")
    assert before_quiet_hours(awake, POLICY.quiet_hours, LA) == awake


def test_a_consult_gets_no_infusion_reminders():
    assert due(Appointment(local("2026-12-03T13:00"), infusion=False)) == []

"""Course rules, opening hours, local-time parsing and availability search, on the clinic policy.

The reference week starts Monday 2026-10-19 in America/Los_Angeles (Pacific Daylight Time);
clocks fall back on Sunday 2026-11-01 and spring forward on Sunday 2026-03-08.
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking.domain.scheduling import (
    CourseOption,
    CourseRuleViolation,
    InvalidLocalTime,
    SchedulingError,
    Slot,
    chair_time,
    parse_start,
    protocol_family,
    search_availability,
    validate_course,
)
from clinic_shared.policy import BookingPolicy, Family, parse_policy

LA = ZoneInfo("America/Los_Angeles")
POLICY = parse_policy().booking
SEVEN_DAY_POLICY = parse_policy(
    """
booking:
  opening_hours:
    mon: [{open: "08:00", close: "18:00"}]
    tue: [{open: "08:00", close: "18:00"}]
    wed: [{open: "08:00", close: "18:00"}]
    thu: [{open: "08:00", close: "18:00"}]
    fri: [{open: "08:00", close: "18:00"}]
    sat: [{open: "08:00", close: "18:00"}]
    sun: [{open: "08:00", close: "18:00"}]
"""
).booking
NOW = datetime(2026, 10, 1, 12, tzinfo=UTC)
MONDAY = date(2026, 10, 19)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """The UTC instant of a clinic wall time that exists exactly once."""
    return datetime.combine(day, time(hour, minute), tzinfo=LA).astimezone(UTC)


def days_from_monday(*offsets: int) -> list[date]:
    return [MONDAY + timedelta(days=offset) for offset in offsets]


def validate(
    protocol: str,
    starts: list[datetime],
    *,
    family: Family | None = None,
    resources: list[str] | None = None,
    first_visit: bool = False,
    policy: BookingPolicy = POLICY,
    now: datetime = NOW,
) -> list[Slot]:
    chosen = resources or ["chair-1"] * len(starts)
    return validate_course(
        policy,
        LA,
        protocol,
        family or protocol_family(policy, protocol, Family.MOOD),
        list(zip(starts, chosen, strict=True)),
        first_visit,
        now,
    )


def refusal(protocol: str, starts: list[datetime], **kwargs: object) -> str:
    with pytest.raises(CourseRuleViolation) as caught:
        validate(protocol, starts, **kwargs)  # type: ignore[arg-type]
    assert caught.value.detail
    return caught.value.code


def local_times(slots: list[Slot] | tuple[Slot, ...]) -> list[str]:
    return [f"{slot.start.astimezone(LA):%a %m-%d %H:%M}" for slot in slots]


# Protocol family and chair time


def test_protocol_family_is_the_protocols_own_family():
    assert protocol_family(POLICY, "mood_induction", None) is Family.MOOD
    assert protocol_family(POLICY, "pain_booster", Family.MOOD) is Family.PAIN
    assert protocol_family(POLICY, "info_consult", None) is Family.CONSULT


def test_maintenance_takes_the_family_of_the_patients_condition():
    assert protocol_family(POLICY, "maintenance", Family.PAIN) is Family.PAIN
    assert protocol_family(POLICY, "maintenance", Family.MOOD) is Family.MOOD


def test_maintenance_without_a_condition_is_refused():
    with pytest.raises(CourseRuleViolation) as caught:
        protocol_family(POLICY, "maintenance", None)
    assert caught.value.code == "condition_required"


def test_maintenance_with_a_condition_other_than_mood_or_pain_is_refused():
    with pytest.raises(CourseRuleViolation) as caught:
        protocol_family(POLICY, "maintenance", Family.CONSULT)
    assert caught.value.code == "invalid_condition"


def test_an_unknown_protocol_is_a_course_rule_violation_not_a_key_error():
    with pytest.raises(CourseRuleViolation) as caught:
        protocol_family(POLICY, "esketamine_spray", None)
    assert caught.value.code == "unknown_protocol"
    with pytest.raises(CourseRuleViolation):
        chair_time(POLICY, "esketamine_spray", Family.MOOD, first_visit=False)


def test_chair_time_is_infusion_plus_recovery():
    assert chair_time(POLICY, "mood_induction", Family.MOOD, False) == timedelta(minutes=90)
    assert chair_time(POLICY, "pain_induction", Family.PAIN, False) == timedelta(minutes=330)
    assert chair_time(POLICY, "mood_booster", Family.MOOD, False) == timedelta(minutes=90)
    assert chair_time(POLICY, "pain_booster", Family.PAIN, False) == timedelta(minutes=330)


def test_maintenance_chair_time_follows_the_condition():
    assert chair_time(POLICY, "maintenance", Family.MOOD, False) == timedelta(minutes=90)
    assert chair_time(POLICY, "maintenance", Family.PAIN, False) == timedelta(minutes=330)


def test_consults_last_their_duration_first_visit_or_not():
    assert chair_time(POLICY, "phone_consult", Family.CONSULT, False) == timedelta(minutes=30)
    assert chair_time(POLICY, "info_consult", Family.CONSULT, True) == timedelta(minutes=30)


def test_first_visit_lengthens_a_mood_infusion_but_never_shortens_a_pain_infusion():
    assert chair_time(POLICY, "mood_induction", Family.MOOD, True) == timedelta(minutes=150)
    assert chair_time(POLICY, "pain_induction", Family.PAIN, True) == timedelta(minutes=330)
    assert chair_time(POLICY, "maintenance", Family.MOOD, True) == timedelta(minutes=150)


# Local times


def test_a_naive_time_in_the_spring_forward_gap_is_refused():
    with pytest.raises(InvalidLocalTime) as caught:
        parse_start(datetime(2026, 3, 8, 2, 30), LA)
    assert caught.value.code == "nonexistent_local_time"
    assert str(caught.value) == caught.value.detail


def test_a_naive_time_repeated_at_fall_back_is_refused_not_guessed():
    for fold in (0, 1):
        with pytest.raises(InvalidLocalTime) as caught:
            parse_start(datetime(2026, 11, 1, 1, 30, fold=fold), LA)
        assert caught.value.code == "ambiguous_local_time"
        assert isinstance(caught.value, SchedulingError)


def test_a_naive_time_is_read_as_clinic_wall_time():
    assert parse_start(datetime(2026, 7, 1, 9, 0), LA) == datetime(2026, 7, 1, 16, tzinfo=UTC)
    assert parse_start(datetime(2026, 12, 1, 9, 0), LA) == datetime(2026, 12, 1, 17, tzinfo=UTC)


def test_an_aware_time_passes_through_as_utc_even_inside_a_local_gap():
    offset = datetime(2026, 3, 8, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))
    parsed = parse_start(offset, LA)
    assert parsed == offset
    assert parsed.utcoffset() == timedelta(0)
    ambiguous_as_pst = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    assert parse_start(ambiguous_as_pst, LA) == ambiguous_as_pst


# Mood induction: 6 within 21 days, at most 3 per calendar week, never consecutive days


def test_mood_course_of_six_over_two_weeks_is_accepted():
    starts = [at(day, 9) for day in days_from_monday(0, 2, 4, 7, 9, 11)]
    slots = validate("mood_induction", starts)
    assert [slot.start for slot in slots] == starts
    assert all(slot.end - slot.start == timedelta(minutes=90) for slot in slots)


def test_mood_course_refuses_two_infusions_on_consecutive_days():
    starts = [at(day, 9) for day in days_from_monday(0, 1, 4, 7, 9, 11)]
    assert refusal("mood_induction", starts) == "gap_too_short"


def test_mood_course_refuses_a_fourth_infusion_in_one_calendar_week():
    sundays_open = parse_policy(
        'booking: {opening_hours: {sun: [{open: "09:00", close: "14:00"}]}}'
    ).booking
    starts = [at(day, 9) for day in days_from_monday(0, 2, 4, 6, 8, 10)]
    assert refusal("mood_induction", starts, policy=sundays_open) == "too_many_per_week"


def test_mood_course_counts_weeks_monday_to_sunday():
    starts = [at(day, 9) for day in days_from_monday(3, 5, 7, 9, 11, 14)]
    assert len(validate("mood_induction", starts)) == 6


def test_mood_course_may_end_on_day_twenty_one_but_not_day_twenty_two():
    within = [at(day, 9) for day in days_from_monday(1, 3, 7, 9, 14, 21)]
    assert len(validate("mood_induction", within)) == 6
    beyond = [at(day, 9) for day in days_from_monday(1, 3, 7, 9, 14, 22)]
    assert refusal("mood_induction", beyond) == "window_exceeded"


def test_mood_course_with_five_infusions_is_refused():
    starts = [at(day, 9) for day in days_from_monday(0, 2, 4, 7, 9)]
    assert refusal("mood_induction", starts) == "wrong_slot_count"


def test_two_infusions_on_one_day_are_refused():
    days = days_from_monday(0, 2, 2, 7, 9, 11)
    starts = [at(day, 9 + 4 * (n == 2)) for n, day in enumerate(days)]
    assert refusal("mood_induction", starts) == "duplicate_day"


def test_mood_course_may_change_time_and_chair_between_infusions():
    starts = [at(day, 8 + n) for n, day in enumerate(days_from_monday(0, 2, 4, 7, 9, 11))]
    chairs = ["chair-1", "chair-2", "chair-3", "chair-4", "chair-1", "chair-2"]
    assert len(validate("mood_induction", starts, resources=chairs)) == 6


# Pain induction: 5 consecutive days at the same local start time


def test_pain_course_of_five_consecutive_weekdays_at_one_time_is_accepted():
    starts = [at(day, 8) for day in days_from_monday(0, 1, 2, 3, 4)]
    slots = validate("pain_induction", starts, family=Family.PAIN)
    assert [slot.end - slot.start for slot in slots] == [timedelta(minutes=330)] * 5


def test_pain_course_refuses_a_skipped_day():
    starts = [at(day, 8) for day in days_from_monday(0, 1, 2, 3, 7)]
    assert refusal("pain_induction", starts) == "gap_too_long"


def test_pain_course_refuses_a_different_start_time():
    starts = [at(day, 8) for day in days_from_monday(0, 1, 2, 3)] + [at(MONDAY + timedelta(4), 9)]
    assert refusal("pain_induction", starts) == "start_times_differ"


def test_pain_course_across_fall_back_keeps_the_local_time_while_utc_shifts():
    days = [date(2026, 10, 29) + timedelta(days=n) for n in range(5)]
    starts = [at(day, 8) for day in days]
    assert {start.hour for start in starts} == {15, 16}
    slots = validate("pain_induction", starts, policy=SEVEN_DAY_POLICY)
    assert local_times(slots)[0] == "Thu 10-29 08:00"
    assert {slot.start.astimezone(LA).time() for slot in slots} == {time(8)}


def test_pain_course_across_spring_forward_keeps_the_local_time_while_utc_shifts():
    days = [date(2026, 3, 6) + timedelta(days=n) for n in range(5)]
    starts = [at(day, 8) for day in days]
    assert {start.hour for start in starts} == {16, 15}
    assert len(
        validate("pain_induction", starts, policy=SEVEN_DAY_POLICY, now=NOW - timedelta(365))
    )


def test_pain_course_at_one_utc_time_across_a_clock_change_is_refused():
    days = [date(2026, 10, 29) + timedelta(days=n) for n in range(5)]
    starts = [datetime.combine(day, time(16), tzinfo=UTC) for day in days]
    assert refusal("pain_induction", starts, policy=SEVEN_DAY_POLICY) == "start_times_differ"


# Boosters and maintenance


@pytest.mark.parametrize("gap", [1, 2])
def test_mood_booster_second_infusion_one_or_two_days_later_is_accepted(gap: int):
    starts = [at(day, 10) for day in days_from_monday(0, gap)]
    assert len(validate("mood_booster", starts)) == 2


def test_mood_booster_second_infusion_three_days_later_is_refused():
    starts = [at(day, 10) for day in days_from_monday(0, 3)]
    assert refusal("mood_booster", starts) == "gap_too_long"


@pytest.mark.parametrize("gap", [1, 2, 3])
def test_pain_booster_second_infusion_one_to_three_days_later_is_accepted(gap: int):
    starts = [at(day, 8) for day in days_from_monday(0, gap)]
    assert len(validate("pain_booster", starts)) == 2


def test_pain_booster_second_infusion_four_days_later_is_refused():
    starts = [at(day, 8) for day in days_from_monday(0, 4)]
    assert refusal("pain_booster", starts) == "gap_too_long"


def test_pain_booster_pair_on_one_day_is_refused():
    assert refusal("pain_booster", [at(MONDAY, 8), at(MONDAY, 8)]) == "duplicate_day"


def test_maintenance_is_a_single_infusion_sized_by_condition():
    mood = validate("maintenance", [at(MONDAY, 9)], family=Family.MOOD)
    pain = validate("maintenance", [at(MONDAY, 9)], family=Family.PAIN)
    assert mood[0].end == at(MONDAY, 10, 30)
    assert pain[0].end == at(MONDAY, 14, 30)
    two = [at(MONDAY, 9), at(MONDAY + timedelta(days=14), 9)]
    assert refusal("maintenance", two, family=Family.MOOD) == "wrong_slot_count"


def test_maintenance_validation_without_a_usable_condition_is_refused():
    assert refusal("maintenance", [at(MONDAY, 9)], family=Family.BY_CONDITION) == (
        "invalid_condition"
    )


# Consults


def test_phone_consult_is_booked_on_the_clinician_line():
    slots = validate("phone_consult", [at(MONDAY, 17, 30)], resources=["clinician-1"])
    assert slots == [Slot(at(MONDAY, 17, 30), at(MONDAY, 18), "clinician-1")]


def test_info_consult_is_booked_in_the_office_not_a_chair():
    assert validate("info_consult", [at(MONDAY, 9)], resources=["office-1"])
    assert refusal("info_consult", [at(MONDAY, 9)], resources=["chair-1"]) == "unknown_resource"


def test_a_consult_is_a_single_appointment():
    starts = [at(MONDAY, 9), at(MONDAY + timedelta(1), 9)]
    code = refusal("phone_consult", starts, resources=["clinician-1", "clinician-1"])
    assert code == "wrong_slot_count"


# Resources, the past, opening hours, first visit


def test_a_chair_the_clinic_does_not_have_is_refused():
    assert refusal("maintenance", [at(MONDAY, 9)], resources=["chair-5"]) == "unknown_resource"


def test_a_slot_starting_now_or_earlier_is_refused():
    start = at(MONDAY, 9)
    assert refusal("maintenance", [start], now=start) == "slot_in_past"
    assert refusal("maintenance", [start], now=start + timedelta(hours=1)) == "slot_in_past"
    assert validate("maintenance", [start], now=start - timedelta(seconds=1))


def test_saturday_hours_cannot_hold_a_pain_infusion():
    saturday = MONDAY + timedelta(days=5)
    code = refusal("maintenance", [at(saturday, 9)], family=Family.PAIN)
    assert code == "outside_opening_hours"
    assert validate("maintenance", [at(saturday, 9)], family=Family.MOOD)


def test_a_slot_ending_exactly_at_closing_time_is_accepted():
    slots = validate("maintenance", [at(MONDAY, 16, 30)])
    assert slots[0].end == at(MONDAY, 18)


def test_a_slot_ending_one_minute_after_closing_is_refused():
    assert refusal("maintenance", [at(MONDAY, 16, 31)]) == "outside_opening_hours"


def test_a_slot_starting_before_opening_or_on_a_closed_day_is_refused():
    assert refusal("maintenance", [at(MONDAY, 7, 59)]) == "outside_opening_hours"
    sunday = MONDAY + timedelta(days=6)
    assert refusal("maintenance", [at(sunday, 10)]) == "outside_opening_hours"


def test_a_slot_crossing_local_midnight_is_outside_opening_hours():
    around_the_clock = parse_policy(
        """
booking:
  opening_hours:
    mon: [{open: "00:00", close: "23:59"}]
    tue: [{open: "00:00", close: "23:59"}]
"""
    ).booking
    assert refusal("maintenance", [at(MONDAY, 23)], policy=around_the_clock) == (
        "outside_opening_hours"
    )


def test_a_slot_must_fit_one_opening_interval_not_span_a_lunch_break():
    split_day = parse_policy(
        """
booking:
  opening_hours:
    mon: [{open: "08:00", close: "12:00"}, {open: "13:00", close: "18:00"}]
"""
    ).booking
    assert refusal("maintenance", [at(MONDAY, 11)], policy=split_day) == "outside_opening_hours"
    assert validate("maintenance", [at(MONDAY, 13)], policy=split_day)


def test_first_visit_length_applies_to_the_first_slot_only():
    days = days_from_monday(0, 2, 4, 7, 9, 11)
    slots = validate("mood_induction", [at(day, 9) for day in days], first_visit=True)
    lengths = [slot.end - slot.start for slot in slots]
    assert lengths == [timedelta(minutes=150)] + [timedelta(minutes=90)] * 5


def test_first_visit_slot_is_the_earliest_even_when_requested_out_of_order():
    days = days_from_monday(11, 0, 2, 4, 7, 9)
    slots = validate("mood_induction", [at(day, 9) for day in days], first_visit=True)
    assert slots[0].start == at(MONDAY, 9)
    assert slots[0].end == at(MONDAY, 11, 30)
    assert slots == sorted(slots)


def test_first_visit_that_would_run_past_closing_is_refused():
    assert validate("maintenance", [at(MONDAY, 16)], first_visit=False)
    assert refusal("maintenance", [at(MONDAY, 16)], first_visit=True) == "outside_opening_hours"


def test_a_naive_start_is_a_programming_error_not_a_guess():
    with pytest.raises(ValueError, match="parse_start"):
        validate("maintenance", [datetime(2026, 10, 19, 9)])


# Availability search

WEEK_START = at(MONDAY, 0)


def search(
    protocol: str,
    *,
    family: Family | None = None,
    busy: dict[str, list[tuple[datetime, datetime]]] | None = None,
    window_from: datetime = WEEK_START,
    window_to: datetime = WEEK_START + timedelta(days=21),
    first_visit: bool = False,
    limit: int = 10,
    policy: BookingPolicy = POLICY,
    preferred_resource: str | None = None,
    now: datetime = NOW,
) -> list[CourseOption]:
    return search_availability(
        policy,
        LA,
        protocol,
        family or protocol_family(policy, protocol, Family.MOOD),
        busy or {},
        window_from,
        window_to,
        first_visit,
        now,
        limit,
        preferred_resource,
    )


def test_options_come_back_ranked_by_earliest_finish():
    options = search("maintenance", family=Family.MOOD, limit=6)
    finishes = [option.slots[-1].end for option in options]
    assert finishes == sorted(finishes)
    assert options[0].slots == (Slot(at(MONDAY, 8), at(MONDAY, 9, 30), "chair-1"),)
    assert [option.slots[0].start for option in options] == [at(MONDAY, 8)] * 4 + [
        at(MONDAY, 8, 30)
    ] * 2


def test_an_empty_calendar_proposes_the_earliest_mood_course_on_one_chair_at_one_time():
    best = search("mood_induction")[0]
    assert local_times(best.slots) == [
        "Mon 10-19 08:00",
        "Wed 10-21 08:00",
        "Fri 10-23 08:00",
        "Mon 10-26 08:00",
        "Wed 10-28 08:00",
        "Fri 10-30 08:00",
    ]
    assert {slot.resource_id for slot in best.slots} == {"chair-1"}


def test_pain_course_search_keeps_the_local_time_across_fall_back():
    window_from = at(date(2026, 10, 29), 0)
    options = search(
        "pain_induction",
        window_from=window_from,
        window_to=window_from + timedelta(days=5),
        policy=SEVEN_DAY_POLICY,
    )
    assert options
    for option in options:
        assert len({slot.start.astimezone(LA).time() for slot in option.slots}) == 1
    assert {slot.start.hour for slot in options[0].slots} == {15, 16}


def test_a_busy_interval_on_the_only_chair_pushes_the_option_to_a_later_time():
    one_chair = parse_policy("booking: {chairs: 1}").booking
    busy = {"chair-1": [(at(MONDAY, 8), at(MONDAY, 9))]}
    best = search("maintenance", family=Family.MOOD, busy=busy, policy=one_chair)[0]
    assert best.slots[0].start == at(MONDAY, 9)


def test_a_busy_interval_on_the_preferred_chair_pushes_the_option_to_another_chair():
    busy = {"chair-2": [(at(MONDAY, 7), at(MONDAY, 9))]}
    options = search("maintenance", family=Family.MOOD, busy=busy, preferred_resource="chair-2")
    assert options[0].slots[0] == Slot(at(MONDAY, 8), at(MONDAY, 9, 30), "chair-1")
    assert all(option.slots[0].resource_id != "chair-2" for option in options[:3])
    preferred_free = search("maintenance", family=Family.MOOD, preferred_resource="chair-2")
    assert preferred_free[0].slots[0].resource_id == "chair-2"


def test_a_follow_up_infusion_keeps_its_time_on_another_chair_rather_than_its_chair():
    tuesday = MONDAY + timedelta(days=1)
    busy = {f"chair-{n}": [(at(MONDAY, 0), at(tuesday, 0))] for n in (1, 2, 3)}
    busy["chair-4"] = [(at(tuesday, 8), at(tuesday, 9))]
    best = search("mood_booster", busy=busy)[0]
    assert local_times(best.slots) == ["Mon 10-19 08:00", "Tue 10-20 08:00"]
    assert [slot.resource_id for slot in best.slots] == ["chair-4", "chair-1"]


def test_search_on_a_seven_day_clinic_never_proposes_four_mood_infusions_in_one_week():
    options = search("mood_induction", policy=SEVEN_DAY_POLICY, limit=20)
    assert options
    for option in options:
        weeks = [slot.start.astimezone(LA).isocalendar()[:2] for slot in option.slots]
        assert max(weeks.count(week) for week in weeks) <= 3
    assert local_times(options[0].slots) == [
        "Mon 10-19 08:00",
        "Wed 10-21 08:00",
        "Fri 10-23 08:00",
        "Mon 10-26 08:00",
        "Wed 10-28 08:00",
        "Fri 10-30 08:00",
    ]


def test_a_later_first_day_that_finishes_sooner_beats_an_earlier_first_day():
    same_time_boosters = parse_policy(
        "booking: {chairs: 1, protocols: {mood_booster: {course: {same_start_time: true}}}}"
    ).booking
    tuesday = MONDAY + timedelta(days=1)
    busy = {"chair-1": [(at(MONDAY, 0), at(MONDAY, 16, 30)), (at(tuesday, 16), at(tuesday, 18))]}
    options = search("mood_booster", busy=busy, policy=same_time_boosters, limit=50)
    assert ["Mon 10-19 16:30", "Wed 10-21 16:30"] in [local_times(o.slots) for o in options]
    best = search("mood_booster", busy=busy, policy=same_time_boosters, limit=1)
    assert local_times(best[0].slots) == ["Tue 10-20 08:00", "Wed 10-21 08:00"]


def test_the_limit_is_respected_and_first_slots_are_distinct():
    for limit in (1, 3, 17):
        options = search("mood_induction", limit=limit)
        assert len(options) == limit
        assert len({option.slots[0] for option in options}) == limit


def test_a_fully_booked_window_has_no_options():
    busy = {chair: [(WEEK_START, WEEK_START + timedelta(days=21))] for chair in POLICY.chair_ids()}
    assert search("mood_induction", busy=busy) == []
    assert search("maintenance", family=Family.PAIN, busy=busy) == []


def test_a_window_too_short_for_the_course_has_no_options():
    assert search("mood_induction", window_to=WEEK_START + timedelta(days=7)) == []


def test_every_slot_ends_inside_the_window():
    window_to = at(MONDAY, 10)
    options = search("maintenance", family=Family.MOOD, window_to=window_to, limit=50)
    assert options
    assert all(option.slots[-1].end <= window_to for option in options)
    assert max(option.slots[0].start for option in options) == at(MONDAY, 8, 30)


def test_no_option_starts_at_or_before_now():
    now = at(MONDAY, 10)
    options = search("maintenance", family=Family.MOOD, now=now, limit=50)
    assert min(option.slots[0].start for option in options) == at(MONDAY, 10, 30)


def test_search_gives_the_first_slot_the_first_visit_length():
    best = search("mood_booster", first_visit=True)[0]
    assert [slot.end - slot.start for slot in best.slots] == [
        timedelta(minutes=150),
        timedelta(minutes=90),
    ]


def test_consult_search_uses_the_consult_resource():
    options = search("phone_consult", limit=3)
    assert [option.slots[0].resource_id for option in options] == ["clinician-1"] * 3
    assert options[0].slots[0].end - options[0].slots[0].start == timedelta(minutes=30)


def test_pain_search_on_a_standard_week_never_uses_saturday():
    options = search("pain_booster", family=Family.PAIN, limit=50)
    assert options
    assert all(slot.start.astimezone(LA).weekday() < 5 for o in options for slot in o.slots)


def test_search_rejects_an_unknown_protocol():
    with pytest.raises(CourseRuleViolation) as caught:
        search("esketamine_spray", family=Family.MOOD)
    assert caught.value.code == "unknown_protocol"

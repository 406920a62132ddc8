"""Availability search against random calendars: whatever it proposes, booking would accept.

Calendars span three weeks around both daylight-saving changes of America/Los_Angeles and a
summer week, on clinics with different chairs, slot steps and opening hours.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booking.domain.scheduling import (
    CourseOption,
    CourseRuleViolation,
    protocol_family,
    search_availability,
    validate_course,
)
from clinic_shared.policy import BookingPolicy, Family, parse_policy

LA = ZoneInfo("America/Los_Angeles")
POLICIES = (
    parse_policy().booking,
    parse_policy(
        """
booking:
  chairs: 2
  slot_step_minutes: 45
  opening_hours:
    mon: [{open: "07:30", close: "12:00"}, {open: "13:00", close: "19:15"}]
    wed: [{open: "08:00", close: "18:00"}]
    thu: [{open: "08:00", close: "18:00"}]
    fri: [{open: "08:00", close: "18:00"}]
    sat: [{open: "09:00", close: "14:00"}]
"""
    ).booking,
    parse_policy(
        """
booking:
  chairs: 3
  opening_hours:
    sun: [{open: "00:30", close: "17:00"}]
    sat: [{open: "08:00", close: "18:00"}]
"""
    ).booking,
)
FIRST_DAYS = (date(2026, 3, 2), date(2026, 6, 15), date(2026, 10, 19))
MINUTES_IN_THREE_WEEKS = 21 * 24 * 60
PROPERTY_SETTINGS = settings(
    max_examples=75,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Scenario:
    policy: BookingPolicy
    protocol: str
    family: Family
    busy: dict[str, list[tuple[datetime, datetime]]]
    window_from: datetime
    window_to: datetime
    first_visit: bool
    now: datetime
    limit: int
    preferred_resource: str | None

    def search(self, limit: int | None = None) -> list[CourseOption]:
        return search_availability(
            self.policy,
            LA,
            self.protocol,
            self.family,
            self.busy,
            self.window_from,
            self.window_to,
            self.first_visit,
            self.now,
            self.limit if limit is None else limit,
            self.preferred_resource,
        )


def minutes(draw: st.DrawFn, low: int, high: int) -> timedelta:
    return timedelta(minutes=15 * draw(st.integers(low // 15, high // 15)))


@st.composite
def scenarios(draw: st.DrawFn, protocols: tuple[str, ...] | None = None) -> Scenario:
    policy = draw(st.sampled_from(POLICIES))
    protocol = draw(st.sampled_from(protocols or tuple(sorted(policy.protocols))))
    condition = draw(st.sampled_from((Family.MOOD, Family.PAIN)))
    family = protocol_family(policy, protocol, condition)
    start = datetime.combine(draw(st.sampled_from(FIRST_DAYS)), time(0), tzinfo=LA)
    start = start.astimezone(UTC)
    resource_ids = policy.all_resource_ids()
    busy: dict[str, list[tuple[datetime, datetime]]] = {}
    for _ in range(draw(st.integers(0, 160))):
        resource = draw(st.sampled_from(resource_ids))
        begins = start + minutes(draw, 0, MINUTES_IN_THREE_WEEKS)
        busy.setdefault(resource, []).append((begins, begins + minutes(draw, 15, 600)))
    window_from = start + minutes(draw, 0, 4 * 24 * 60)
    window_to = window_from + minutes(draw, 60, MINUTES_IN_THREE_WEEKS)
    own = policy.resource_ids(policy.protocols[protocol].resource)
    return Scenario(
        policy=policy,
        protocol=protocol,
        family=family,
        busy=busy,
        window_from=window_from,
        window_to=window_to,
        first_visit=draw(st.booleans()),
        now=start + minutes(draw, -2 * 24 * 60, 5 * 24 * 60),
        limit=draw(st.integers(1, 12)),
        preferred_resource=draw(st.none() | st.sampled_from([*own, "chair-99"])),
    )


def rank(option: CourseOption, preferred: str | None) -> tuple[datetime, int, int, int, datetime]:
    slots = option.slots
    resources = [slot.resource_id for slot in slots]
    return (
        slots[-1].end,
        len({slot.start.astimezone(LA).time() for slot in slots}),
        len(set(resources)),
        sum(resource != preferred for resource in resources) if preferred else 0,
        slots[0].start,
    )


def overlaps(start: datetime, end: datetime, intervals: list[tuple[datetime, datetime]]) -> bool:
    return any(start < busy_end and busy_start < end for busy_start, busy_end in intervals)


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_option_is_a_course_booking_would_accept_and_fits_the_free_calendar(
    scenario: Scenario,
):
    options = scenario.search()
    assert len(options) <= scenario.limit
    assert len({option.slots[0] for option in options}) == len(options)
    for option in options:
        requested = [(slot.start, slot.resource_id) for slot in option.slots]
        accepted = validate_course(
            scenario.policy,
            LA,
            scenario.protocol,
            scenario.family,
            requested,
            scenario.first_visit,
            scenario.now,
        )
        assert accepted == list(option.slots)
        for slot in option.slots:
            assert scenario.window_from <= slot.start
            assert slot.end <= scenario.window_to
            assert not overlaps(slot.start, slot.end, scenario.busy.get(slot.resource_id, []))


@PROPERTY_SETTINGS
@given(scenarios())
def test_options_are_in_ranking_order(scenario: Scenario):
    preferred = scenario.preferred_resource
    if preferred not in scenario.policy.all_resource_ids():
        preferred = None
    keys = [rank(option, preferred) for option in scenario.search()]
    assert keys == sorted(keys)


@PROPERTY_SETTINGS
@given(scenarios())
def test_stopping_early_never_drops_a_better_option(scenario: Scenario):
    every_first_slot = 100_000
    assert scenario.search() == scenario.search(every_first_slot)[: scenario.limit]


def earliest_free_finish(scenario: Scenario) -> datetime | None:
    """Every step-aligned start of every opening interval, tried one by one."""
    policy = scenario.policy
    resources = policy.resource_ids(policy.protocols[scenario.protocol].resource)
    step = timedelta(minutes=policy.slot_step_minutes)
    day = scenario.window_from.astimezone(LA).date()
    best: datetime | None = None
    while day <= scenario.window_to.astimezone(LA).date():
        for interval in policy.opening_intervals(day):
            wall = datetime.combine(day, interval.open)
            while wall < datetime.combine(day, interval.close):
                for fold in (0, 1):
                    start = wall.replace(tzinfo=LA, fold=fold).astimezone(UTC)
                    if start.astimezone(LA).replace(tzinfo=None) != wall:
                        continue
                    if start < scenario.window_from:
                        continue
                    for resource in resources:
                        try:
                            [slot] = validate_course(
                                policy,
                                LA,
                                scenario.protocol,
                                scenario.family,
                                [(start, resource)],
                                scenario.first_visit,
                                scenario.now,
                            )
                        except CourseRuleViolation:
                            continue
                        if slot.end > scenario.window_to:
                            continue
                        if overlaps(slot.start, slot.end, scenario.busy.get(resource, [])):
                            continue
                        if best is None or slot.end < best:
                            best = slot.end
                wall += step
        day += timedelta(days=1)
    return best


@PROPERTY_SETTINGS
@given(scenarios(protocols=("maintenance", "phone_consult", "info_consult")))
def test_a_single_appointment_search_finds_the_earliest_free_slot_or_none_exists(
    scenario: Scenario,
):
    options = scenario.search()
    earliest = earliest_free_finish(scenario)
    if earliest is None:
        assert options == []
    else:
        assert options[0].slots[0].end == earliest

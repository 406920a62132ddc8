"""Course rules, opening hours and availability search, as pure functions of the clinic policy.

Instants are aware UTC datetimes and all arithmetic on them is done in UTC. Calendar dates,
Monday-to-Sunday weeks and wall-clock start times are the clinic's, read through its zone.
Nothing here reads a clock: `now` is always an argument.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from clinic_shared.policy import BookingPolicy, CourseRule, Family, ProtocolPolicy

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Slot:
    start: datetime
    end: datetime
    resource_id: str


@dataclass(frozen=True)
class CourseOption:
    slots: tuple[Slot, ...]


class SchedulingError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class CourseRuleViolation(SchedulingError):
    """The requested appointments break a rule of the protocol or the clinic calendar."""


class InvalidLocalTime(SchedulingError):
    """A clinic-local wall time without an offset that names no single instant."""


def _protocol(policy: BookingPolicy, protocol: str) -> ProtocolPolicy:
    rules = policy.protocols.get(protocol)
    if rules is None:
        known = ", ".join(sorted(policy.protocols))
        raise CourseRuleViolation(
            "unknown_protocol", f"unknown protocol {protocol!r}; the clinic offers {known}"
        )
    return rules


def protocol_family(policy: BookingPolicy, protocol: str, condition: Family | None) -> Family:
    """The protocol's family; a by-condition protocol (maintenance) takes the patient's condition.

    The condition must then be mood or pain: without one the course cannot be sized
    (`condition_required`), and any other family is refused (`invalid_condition`).
    """
    family = _protocol(policy, protocol).family_for(condition)
    if family is not None:
        return family
    if condition is None:
        raise CourseRuleViolation(
            "condition_required",
            f"{protocol} lasts as long as the patient's condition requires (mood or pain), "
            "and no condition is on file",
        )
    raise CourseRuleViolation(
        "invalid_condition",
        f"{protocol} needs the patient's condition as mood or pain, not {condition.value}",
    )


def chair_time(
    policy: BookingPolicy, protocol: str, family: Family, first_visit: bool
) -> timedelta:
    """How long one appointment of the protocol holds its resource.

    A consult holds it for its duration. An infusion holds the chair for infusion plus
    recovery (a by-condition protocol borrows both from the protocol of `family`); the patient's
    first infusion visit includes the clinician's evaluation and lasts the policy's first-visit
    time, never less than the usual chair time.
    """
    rules = _protocol(policy, protocol)
    if not rules.is_infusion:
        assert rules.duration_minutes is not None
        return timedelta(minutes=rules.duration_minutes)
    source: ProtocolPolicy | None = rules
    if rules.family is Family.BY_CONDITION:
        source = policy.family_protocol(protocol_family(policy, protocol, family))
    assert source is not None and source.infusion_minutes is not None
    usual = source.infusion_minutes + source.recovery_minutes
    minutes = max(policy.first_visit_minutes, usual) if first_visit else usual
    return timedelta(minutes=minutes)


def _wall_instants(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants a naive wall time names in `zone`: none in a gap, two in a fold."""
    earlier = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) != wall:
        return ()
    later = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return (earlier,) if later == earlier else (earlier, later)


def parse_start(value: datetime, zone: ZoneInfo) -> datetime:
    """A requested start as a UTC instant.

    An aware value is converted to UTC. A naive value is the clinic's wall time in `zone`; a wall
    time skipped by a daylight-saving change (`nonexistent_local_time`) or repeated by one
    (`ambiguous_local_time`) is refused rather than guessed.
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC)
    instants = _wall_instants(value.replace(tzinfo=None), zone)
    if not instants:
        raise InvalidLocalTime(
            "nonexistent_local_time",
            f"{value:%Y-%m-%d %H:%M} does not exist in {zone.key} (clocks spring forward); "
            "give the time with its UTC offset",
        )
    if len(instants) > 1:
        raise InvalidLocalTime(
            "ambiguous_local_time",
            f"{value:%Y-%m-%d %H:%M} happens twice in {zone.key} (clocks fall back); "
            "give the time with its UTC offset",
        )
    return instants[0]


def _opening_bounds(
    policy: BookingPolicy, zone: ZoneInfo, day: date
) -> list[tuple[datetime, datetime]]:
    return [
        (
            datetime.combine(day, interval.open, tzinfo=zone).astimezone(UTC),
            datetime.combine(day, interval.close, tzinfo=zone).astimezone(UTC),
        )
        for interval in policy.opening_intervals(day)
    ]


def within_opening_hours(
    policy: BookingPolicy, zone: ZoneInfo, start: datetime, end: datetime
) -> bool:
    """Whether [start, end) lies inside one opening interval of its clinic-local day."""
    day = start.astimezone(zone).date()
    return any(
        opens <= start and end <= closes for opens, closes in _opening_bounds(policy, zone, day)
    )


def _local(instant: datetime, zone: ZoneInfo) -> str:
    return f"{instant.astimezone(zone):%a %Y-%m-%d %H:%M}"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no UTC offset; convert it with parse_start first")
    return value.astimezone(UTC)


def _week(day: date) -> int:
    return day.toordinal() - day.weekday()


def _check_course_rule(protocol: str, course: CourseRule, starts: Sequence[datetime]) -> None:
    days = [start.date() for start in starts]
    for before, after in pairwise(days):
        if before == after:
            raise CourseRuleViolation(
                "duplicate_day", f"{protocol} takes at most one appointment per day ({after})"
            )
    for before, after in pairwise(days):
        gap = (after - before).days
        if gap < course.min_gap_days:
            raise CourseRuleViolation(
                "gap_too_short",
                f"{protocol} needs at least {course.min_gap_days} calendar day(s) between "
                f"appointments; {before} to {after} is {gap}",
            )
        if course.max_gap_days is not None and gap > course.max_gap_days:
            raise CourseRuleViolation(
                "gap_too_long",
                f"{protocol} allows at most {course.max_gap_days} calendar day(s) between "
                f"appointments; {before} to {after} is {gap}",
            )
    if course.window_days is not None and (days[-1] - days[0]).days >= course.window_days:
        raise CourseRuleViolation(
            "window_exceeded",
            f"{protocol} must be given within {course.window_days} days of the first "
            f"appointment ({days[0]}); {days[-1]} is outside",
        )
    if course.max_per_calendar_week is not None:
        per_week = Counter(_week(day) for day in days)
        week, count = per_week.most_common(1)[0]
        if count > course.max_per_calendar_week:
            raise CourseRuleViolation(
                "too_many_per_week",
                f"{protocol} allows at most {course.max_per_calendar_week} appointments per "
                f"Monday-to-Sunday week; {count} fall in the week of {date.fromordinal(week)}",
            )
    if course.same_start_time and len({start.time() for start in starts}) > 1:
        times = ", ".join(sorted({f"{start:%H:%M}" for start in starts}))
        raise CourseRuleViolation(
            "start_times_differ",
            f"{protocol} starts at the same clinic time every day; asked for {times}",
        )


def validate_course(
    policy: BookingPolicy,
    zone: ZoneInfo,
    protocol: str,
    family: Family,
    starts: Sequence[tuple[datetime, str]],
    first_visit: bool,
    now: datetime,
) -> list[Slot]:
    """The course's slots in start order, or the first rule the request breaks.

    Each slot lasts the protocol's chair time (the first one the first-visit time when
    `first_visit`), sits on a resource of the protocol's kind, starts after `now` and lies
    wholly inside one opening interval of its clinic-local date. The clinic-local dates then
    follow the protocol's course rule: the number of appointments, one per day, the gaps
    between consecutive dates, the window counted from the first date as day 1, the cap per
    Monday-to-Sunday week and, where required, one wall-clock start time for all.
    """
    rules = _protocol(policy, protocol)
    course = rules.course
    if len(starts) != course.count:
        raise CourseRuleViolation(
            "wrong_slot_count",
            f"{protocol} is booked as {course.count} appointment(s); {len(starts)} were asked for",
        )
    usual = chair_time(policy, protocol, family, first_visit=False)
    first = chair_time(policy, protocol, family, first_visit=True) if first_visit else usual
    known = set(policy.resource_ids(rules.resource))
    ordered = sorted(((_utc(start), resource) for start, resource in starts), key=lambda p: p[0])
    slots: list[Slot] = []
    for position, (start, resource_id) in enumerate(ordered):
        if resource_id not in known:
            raise CourseRuleViolation(
                "unknown_resource",
                f"{resource_id!r} is not a {rules.resource.value} of this clinic",
            )
        if start <= now:
            raise CourseRuleViolation(
                "slot_in_past", f"{_local(start, zone)} has already started or passed"
            )
        end = start + (first if position == 0 else usual)
        if not within_opening_hours(policy, zone, start, end):
            raise CourseRuleViolation(
                "outside_opening_hours",
                f"{_local(start, zone)} to {_local(end, zone)} is not within the clinic's "
                "opening hours of that day",
            )
        slots.append(Slot(start, end, resource_id))
    _check_course_rule(protocol, course, [slot.start.astimezone(zone) for slot in slots])
    return slots


@dataclass(frozen=True, slots=True)
class _Opening:
    wall: time
    start: datetime
    end: datetime
    free: tuple[str, ...]


class _BusyIndex:
    """Per resource, the occupied intervals merged, sorted, and searched by bisection."""

    def __init__(
        self, busy: Mapping[str, Sequence[tuple[datetime, datetime]]], resources: Sequence[str]
    ) -> None:
        self._starts: dict[str, list[datetime]] = {}
        self._ends: dict[str, list[datetime]] = {}
        for resource in resources:
            intervals = sorted(
                (_utc(start), _utc(end)) for start, end in busy.get(resource, ()) if end > start
            )
            starts: list[datetime] = []
            ends: list[datetime] = []
            for start, end in intervals:
                if ends and start <= ends[-1]:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[resource] = starts
            self._ends[resource] = ends

    def is_free(self, resource: str, start: datetime, end: datetime) -> bool:
        starts = self._starts[resource]
        index = bisect_left(starts, end) - 1
        return index < 0 or self._ends[resource][index] <= start


class _Grid:
    """Per clinic-local date and chair time, the candidate starts that fit and who is free."""

    def __init__(
        self,
        policy: BookingPolicy,
        zone: ZoneInfo,
        resources: Sequence[str],
        busy: _BusyIndex,
        not_before: datetime,
        after: datetime,
        not_after: datetime,
    ) -> None:
        self._policy = policy
        self._zone = zone
        self._resources = resources
        self._busy = busy
        self._not_before = not_before
        self._after = after
        self._not_after = not_after
        self._step = timedelta(minutes=policy.slot_step_minutes)
        self._candidates: dict[date, list[tuple[time, datetime, datetime]]] = {}
        self._openings: dict[tuple[date, timedelta], list[_Opening]] = {}
        self._by_wall: dict[tuple[date, timedelta], dict[time, list[_Opening]]] = {}

    def _starts(self, day: date) -> list[tuple[time, datetime, datetime]]:
        cached = self._candidates.get(day)
        if cached is not None:
            return cached
        found: list[tuple[time, datetime, datetime]] = []
        for interval, (opens, closes) in zip(
            self._policy.opening_intervals(day),
            _opening_bounds(self._policy, self._zone, day),
            strict=True,
        ):
            wall = datetime.combine(day, interval.open)
            last = datetime.combine(day, interval.close)
            while wall < last:
                for start in _wall_instants(wall, self._zone):
                    if opens <= start < closes:
                        found.append((wall.time(), start, closes))
                wall += self._step
        found.sort(key=lambda candidate: candidate[1])
        self._candidates[day] = found
        return found

    def openings(self, day: date, length: timedelta) -> list[_Opening]:
        key = (day, length)
        cached = self._openings.get(key)
        if cached is not None:
            return cached
        found: list[_Opening] = []
        is_free = self._busy.is_free
        for wall, start, closes in self._starts(day):
            end = start + length
            if end > closes or end > self._not_after:
                continue
            if start < self._not_before or start <= self._after:
                continue
            free = tuple(r for r in self._resources if is_free(r, start, end))
            if free:
                found.append(_Opening(wall, start, end, free))
        self._openings[key] = found
        return found

    def by_wall(self, day: date, length: timedelta) -> dict[time, list[_Opening]]:
        key = (day, length)
        cached = self._by_wall.get(key)
        if cached is not None:
            return cached
        grouped: dict[time, list[_Opening]] = {}
        for opening in self.openings(day, length):
            grouped.setdefault(opening.wall, []).append(opening)
        self._by_wall[key] = grouped
        return grouped


class _DateFinder:
    """The earliest clinic-local dates completing a course from its first date.

    Whether a date can take a follow-up appointment does not depend on which time or resource
    the other dates use, so the course rule is solved on dates alone, with dead ends remembered.
    """

    def __init__(self, course: CourseRule, grid: _Grid, length: timedelta, last_day: date) -> None:
        self._course = course
        self._grid = grid
        self._length = length
        self._last_day = last_day
        self._min_gap = max(course.min_gap_days, 1)
        self._found: dict[tuple[date, time | None], tuple[date, ...] | None] = {}
        self._dead: set[tuple[date | None, int, date, int, time | None]] = set()

    def dates(self, first: date, wall: time | None) -> tuple[date, ...] | None:
        key = (first, wall)
        if key not in self._found:
            chosen = [first]
            self._found[key] = tuple(chosen) if self._extend(chosen, 1, wall) else None
        return self._found[key]

    def _takes(self, day: date, wall: time | None) -> bool:
        if wall is None:
            return bool(self._grid.openings(day, self._length))
        return wall in self._grid.by_wall(day, self._length)

    def _extend(self, chosen: list[date], week_count: int, wall: time | None) -> bool:
        course = self._course
        placed = len(chosen)
        if placed == course.count:
            return True
        first, previous = chosen[0], chosen[-1]
        dead_key = (
            first if course.window_days is not None else None,
            placed,
            previous,
            week_count,
            wall,
        )
        if dead_key in self._dead:
            return False
        latest = self._last_day
        if course.window_days is not None:
            latest = min(latest, first + timedelta(days=course.window_days - 1))
        latest -= timedelta(days=(course.count - placed - 1) * self._min_gap)
        if course.max_gap_days is not None:
            latest = min(latest, previous + timedelta(days=course.max_gap_days))
        day = previous + timedelta(days=self._min_gap)
        while day <= latest:
            count = week_count + 1 if _week(day) == _week(previous) else 1
            cap = course.max_per_calendar_week
            if (cap is None or count <= cap) and self._takes(day, wall):
                chosen.append(day)
                if self._extend(chosen, count, wall):
                    return True
                chosen.pop()
            day += timedelta(days=1)
        self._dead.add(dead_key)
        return False


def _minutes(wall: time) -> int:
    return wall.hour * 60 + wall.minute


def _follow_up(
    openings: list[_Opening],
    by_wall: dict[time, list[_Opening]],
    walls: list[time],
    resource_rank: Mapping[str, int],
    used_resources: list[str],
    first_resource: str,
) -> tuple[_Opening, str]:
    """A follow-up date's slot, keeping the course to few wall times first, few resources next.

    The wall time: one the course already uses (the first slot's first), else the nearest to
    the first slot's. The resource: the first slot's, else one already used, else by rank.
    """
    candidates: list[_Opening] | None = None
    for wall in walls:
        candidates = by_wall.get(wall)
        if candidates:
            break
    if not candidates:
        target = _minutes(walls[0])
        nearest = min(openings, key=lambda o: (abs(_minutes(o.wall) - target), o.start))
        candidates = by_wall[nearest.wall]
    best: tuple[int, int] | None = None
    chosen: tuple[_Opening, str] | None = None
    for opening in candidates:
        for resource in opening.free:
            if resource == first_resource:
                return opening, resource
            score = (0 if resource in used_resources else 1, resource_rank[resource])
            if best is None or score < best:
                best, chosen = score, (opening, resource)
    assert chosen is not None
    return chosen


def search_availability(
    policy: BookingPolicy,
    zone: ZoneInfo,
    protocol: str,
    family: Family,
    busy: Mapping[str, Sequence[tuple[datetime, datetime]]],
    window_from: datetime,
    window_to: datetime,
    first_visit: bool,
    now: datetime,
    limit: int,
    preferred_resource: str | None = None,
) -> list[CourseOption]:
    """Whole courses that `validate_course` accepts and that collide with nothing in `busy`.

    Candidate starts step through each opening interval from its opening time by the policy's
    slot step (clinic wall clock); a slot starts after `now` and inside the window, and ends
    inside its opening interval and the window. Per first slot one course is proposed: the
    earliest dates the course rule allows, each preferring the first slot's wall-clock time and
    resource. Options are ranked by earliest finish, then fewest distinct wall-clock start
    times, then fewest distinct resources (then fewest slots off `preferred_resource`), then
    earliest first start; at most `limit`, never two with the same first slot.
    """
    rules = _protocol(policy, protocol)
    course = rules.course
    usual = chair_time(policy, protocol, family, first_visit=False)
    first_length = chair_time(policy, protocol, family, first_visit=True) if first_visit else usual
    window_from, window_to, now = _utc(window_from), _utc(window_to), _utc(now)
    resources = policy.resource_ids(rules.resource)
    if limit <= 0 or window_to <= window_from or not resources:
        return []
    preferred = preferred_resource if preferred_resource in resources else None
    if preferred is not None:
        resources = [preferred, *(r for r in resources if r != preferred)]
    resource_rank = {resource: rank for rank, resource in enumerate(resources)}
    grid = _Grid(policy, zone, resources, _BusyIndex(busy, resources), window_from, now, window_to)
    first_day = max(window_from, now).astimezone(zone).date()
    last_day = window_to.astimezone(zone).date()
    finder = _DateFinder(course, grid, usual, last_day)
    span = timedelta(days=(course.count - 1) * max(course.min_gap_days, 1))

    ranked: list[tuple[tuple[datetime, int, int, int, datetime, int], list[tuple[_Opening, str]]]]
    ranked = []
    worst_finishes: list[timedelta] = []

    def worst_finish() -> datetime | None:
        if len(worst_finishes) < limit:
            return None
        return _EPOCH - worst_finishes[0]

    last_length = usual if course.count > 1 else first_length
    for offset in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        worst = worst_finish()
        if worst is not None:
            earliest_last = datetime.combine(day + span, time(0), tzinfo=zone).astimezone(UTC)
            if earliest_last + last_length > worst:
                break
        for first in grid.openings(day, first_length):
            worst = worst_finish()
            if worst is not None and first.end > worst:
                break
            dates = finder.dates(day, first.wall if course.same_start_time else None)
            if dates is None:
                continue
            for first_resource in first.free:
                picks = [(first, first_resource)]
                walls = [first.wall]
                used = [first_resource]
                for follow in dates[1:]:
                    opening, resource = _follow_up(
                        grid.openings(follow, usual),
                        grid.by_wall(follow, usual),
                        walls,
                        resource_rank,
                        used,
                        first_resource,
                    )
                    picks.append((opening, resource))
                    if opening.wall not in walls:
                        walls.append(opening.wall)
                    if resource not in used:
                        used.append(resource)
                finish = picks[-1][0].end
                off_preferred = (
                    sum(1 for _, r in picks if r != preferred) if preferred is not None else 0
                )
                key = (finish, len(walls), len(used), off_preferred, first.start, len(ranked))
                ranked.append((key, picks))
                heapq.heappush(worst_finishes, _EPOCH - finish)
                if len(worst_finishes) > limit:
                    heapq.heappop(worst_finishes)

    ranked.sort(key=lambda entry: entry[0])
    return [
        CourseOption(tuple(Slot(o.start, o.end, resource) for o, resource in picks))
        for _, picks in ranked[:limit]
    ]

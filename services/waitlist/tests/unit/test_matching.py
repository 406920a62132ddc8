"""Who fits a released block: protocol, earliest start, weekdays and windows in clinic time."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from clinic_shared.policy import Family, default_policy
from waitlist.domain.model import (
    Block,
    BlockKind,
    BlockStatus,
    Entry,
    EntryStatus,
    MatchContext,
    Preferences,
    Priority,
    Slot,
    TimeWindow,
    candidates,
    offer_expiry,
    protocol_family,
    queue_order,
    rank_for_position,
)

TZ = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
BOOKING = default_policy().booking


def slot(local: str, minutes: int = 90) -> Slot:
    start = datetime.fromisoformat(local).replace(tzinfo=TZ).astimezone(UTC)
    return Slot(uuid.uuid4(), "chair-1", start, start + timedelta(minutes=minutes))


def block(*starts: str, kind: BlockKind = BlockKind.SERIES) -> Block:
    return Block(
        id=uuid.uuid4(),
        hold_id=uuid.uuid4(),
        kind=kind,
        protocol="mood_induction",
        family=Family.MOOD,
        slots=[slot(s) for s in starts],
        released_at=NOW,
    )


def entry(
    protocol: str = "mood_induction",
    *,
    weekdays: tuple[str, ...] = (),
    windows: tuple[tuple[str, str], ...] = (),
    earliest: date = date(2026, 11, 21),
    priority: Priority = Priority.ROUTINE,
    rank: float = 0.0,
    status: EntryStatus = EntryStatus.ACTIVE,
) -> Entry:
    return Entry(
        id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        protocol=protocol,
        family=Family.MOOD,
        earliest_start=earliest,
        preferences=Preferences(
            frozenset(weekdays),
            tuple(TimeWindow(time.fromisoformat(a), time.fromisoformat(b)) for a, b in windows),
        ),
        priority=priority,
        created_at=NOW,
        rank=rank,
        status=status,
    )


SERIES = block("2026-11-25T09:00", "2026-11-27T09:00", "2026-11-30T09:00")


def fits(candidate: Entry, released: Block = SERIES) -> bool:
    return candidate in candidates(released, [candidate], MatchContext(TZ, BOOKING, NOW))


def test_a_window_must_hold_the_whole_visit_in_clinic_time():
    assert fits(entry(windows=(("09:00", "10:30"),)))
    assert not fits(entry(windows=(("09:00", "10:29"),)))
    assert not fits(entry(windows=(("09:01", "12:00"),)))
    assert fits(entry(windows=(("07:00", "08:00"), ("08:30", "11:00"))))


def test_every_slot_must_fall_on_a_wanted_weekday_and_after_the_earliest_start():
    assert fits(entry(weekdays=("mon", "wed", "fri")))
    assert not fits(entry(weekdays=("mon", "wed")))  # the 27th is a Friday
    assert fits(entry(earliest=date(2026, 11, 25)))
    assert not fits(entry(earliest=date(2026, 11, 26)))


def test_a_series_goes_to_its_induction_a_single_slot_to_boosters_and_maintenance():
    single = block("2026-11-25T09:00", kind=BlockKind.SINGLE)
    assert fits(entry("mood_induction")) and not fits(entry("mood_induction"), single)
    assert fits(entry("mood_booster"), single) and not fits(entry("mood_booster"))
    assert fits(entry("maintenance"), single)
    pain = entry("pain_booster")
    pain.family = Family.PAIN
    assert not fits(pain, single)


def test_paused_tried_and_busy_entries_are_passed_over():
    paused = entry(status=EntryStatus.PAUSED)
    tried, busy, free = entry(), entry(), entry()
    context = MatchContext(TZ, BOOKING, NOW, tried={tried.id}, busy={busy.id})
    assert candidates(SERIES, [paused, tried, busy, free], context) == [free]


def test_urgent_entries_come_first_then_rank():
    late_urgent = entry(priority=Priority.URGENT, rank=9.0)
    early, later = entry(rank=1.0), entry(rank=2.0)
    assert queue_order([later, early, late_urgent]) == [late_urgent, early, later]


def test_a_position_becomes_a_rank_between_neighbours():
    peers = [entry(rank=r) for r in (10.0, 20.0, 30.0)]
    assert rank_for_position(peers, 1) < 10.0
    assert 10.0 < rank_for_position(peers, 2) < 20.0
    assert rank_for_position(peers, 4) > 30.0
    assert rank_for_position(peers, 99) > 30.0
    assert rank_for_position([], 1) == 0.0


def test_an_offer_never_outlives_its_first_slot():
    soon = NOW + timedelta(minutes=20)
    assert offer_expiry(NOW, soon, timedelta(minutes=30)) == soon
    assert offer_expiry(NOW, NOW + timedelta(days=3), timedelta(hours=2)) == NOW + timedelta(
        hours=2
    )


def test_splitting_makes_one_single_block_per_slot_in_time_order():
    series = block("2026-11-27T09:00", "2026-11-25T09:00")
    children = series.split(uuid.uuid4() for _ in series.slots)
    assert series.status is BlockStatus.SPLIT
    assert [c.kind for c in children] == [BlockKind.SINGLE, BlockKind.SINGLE]
    assert [c.slots[0].start for c in children] == sorted(s.start for s in series.slots)
    assert {c.parent_id for c in children} == {series.id}


def test_maintenance_waits_in_the_family_of_the_condition():
    assert protocol_family(BOOKING, "maintenance", "pain") is Family.PAIN
    assert protocol_family(BOOKING, "maintenance", None) is None
    assert protocol_family(BOOKING, "pain_induction", None) is Family.PAIN
    assert protocol_family(BOOKING, "info_consult", "mood") is None

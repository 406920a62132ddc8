"""The waitlist's domain: entries in their order, released blocks, offers, and who fits what.

Pure: no database, no clock of its own, no I/O. Times are aware datetimes in UTC; a patient's
preferences are in the clinic's local time, so fitting takes the clinic's zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from uuid import UUID
from zoneinfo import ZoneInfo

from clinic_shared.policy import BookingPolicy, Family

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Priority(StrEnum):
    URGENT = "urgent"
    """Set only by a clinician or scheduler (e.g. suicidal ideation flagged at intake)."""
    ROUTINE = "routine"


PRIORITY_ORDER = {Priority.URGENT: 0, Priority.ROUTINE: 1}


class EntryStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    """Kept in the queue but skipped by matching until resumed."""
    FULFILLED = "fulfilled"
    """An offer was booked for this entry."""
    REMOVED = "removed"


WAITING_STATUSES = (EntryStatus.ACTIVE, EntryStatus.PAUSED)


@dataclass(frozen=True)
class TimeWindow:
    start: time
    end: time

    def contains(self, start: time, end: time) -> bool:
        return self.start <= start and end <= self.end


@dataclass(frozen=True)
class Preferences:
    """When the patient can come: weekdays (empty: any) and time windows (empty: any time)."""

    weekdays: frozenset[str] = frozenset()
    windows: tuple[TimeWindow, ...] = ()

    def admits(self, start: datetime, end: datetime) -> bool:
        """Can the patient sit in the chair from `start` to `end` (both clinic-local)?"""
        if self.weekdays and WEEKDAYS[start.weekday()] not in self.weekdays:
            return False
        if end.date() != start.date():
            return False
        return not self.windows or any(w.contains(start.time(), end.time()) for w in self.windows)


@dataclass
class Entry:
    id: UUID
    patient_id: UUID
    protocol: str
    family: Family
    earliest_start: date
    preferences: Preferences
    priority: Priority
    created_at: datetime
    rank: float
    """Order within the priority: the creation instant, moved when a scheduler reorders."""
    status: EntryStatus = EntryStatus.ACTIVE
    created_by: str = "patient"
    fulfilled_at: datetime | None = None
    first_infusion_at: datetime | None = None

    def sort_key(self) -> tuple[int, float, datetime]:
        return PRIORITY_ORDER[self.priority], self.rank, self.created_at

    def can_attend(self, slots: Sequence[Slot], tz: ZoneInfo) -> bool:
        """Every slot on or after the earliest start and inside the patient's preferences."""
        for slot in slots:
            start, end = slot.start.astimezone(tz), slot.end.astimezone(tz)
            if start.date() < self.earliest_start or not self.preferences.admits(start, end):
                return False
        return True


def queue_order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=Entry.sort_key)


def rank_for_position(others: Sequence[Entry], position: int) -> float:
    """The rank that puts an entry at 1-based `position` among `others` (same priority, ordered)."""
    index = max(0, min(position - 1, len(others)))
    if not others:
        return 0.0
    if index == 0:
        return others[0].rank - 1.0
    if index == len(others):
        return others[-1].rank + 1.0
    return (others[index - 1].rank + others[index].rank) / 2


@dataclass(frozen=True)
class Slot:
    appointment_id: UUID
    resource_id: str
    start: datetime
    end: datetime


class BlockKind(StrEnum):
    SERIES = "series"
    """The remaining appointments of a cancelled induction course, offered whole."""
    SINGLE = "single"


class BlockStatus(StrEnum):
    OFFERED = "offered"
    """An offer is open (or accepted and awaiting booking's answer)."""
    BOOKED = "booked"
    SPLIT = "split"
    """Nobody fitted the whole series: each slot became a single block of its own."""
    UNCLAIMED = "unclaimed"
    """Nobody took it: booking has been told to open the slots to everybody."""


@dataclass
class Block:
    """Held slots handed to the waitlist by booking (one hold), or one slot of a split series."""

    id: UUID
    hold_id: UUID
    kind: BlockKind
    protocol: str
    family: Family
    slots: list[Slot]
    released_at: datetime
    status: BlockStatus = BlockStatus.OFFERED
    parent_id: UUID | None = None
    decided_at: datetime | None = None

    @property
    def first_start(self) -> datetime:
        return min(slot.start for slot in self.slots)

    @property
    def appointment_ids(self) -> list[UUID]:
        return [slot.appointment_id for slot in self.slots]

    def split(self, new_id: Iterable[UUID]) -> list[Block]:
        """One single-slot block per slot, for entries wanting a booster or maintenance."""
        self.status = BlockStatus.SPLIT
        return [
            Block(
                id=block_id,
                hold_id=self.hold_id,
                kind=BlockKind.SINGLE,
                protocol=self.protocol,
                family=self.family,
                slots=[slot],
                released_at=self.released_at,
                parent_id=self.id,
            )
            for block_id, slot in zip(
                new_id, sorted(self.slots, key=lambda s: s.start), strict=False
            )
        ]


class OfferStatus(StrEnum):
    OPEN = "open"
    ACCEPTING = "accepting"
    """The patient accepted; booking has not answered yet. Reads `accepted` once it has."""
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    FAILED = "failed"
    """Booking could not book the accepted slots; the block moved on."""
    WITHDRAWN = "withdrawn"


LIVE_OFFER_STATUSES = (OfferStatus.OPEN, OfferStatus.ACCEPTING)


@dataclass
class Offer:
    id: UUID
    block_id: UUID
    hold_id: UUID
    entry_id: UUID
    patient_id: UUID
    protocol: str
    slots: list[Slot]
    made_at: datetime
    expires_at: datetime
    status: OfferStatus = OfferStatus.OPEN
    manual: bool = False
    made_by: str = "matching"
    decided_at: datetime | None = None
    failure_reason: str | None = None
    course_id: UUID | None = None

    @property
    def appointment_ids(self) -> list[UUID]:
        return [slot.appointment_id for slot in self.slots]

    def is_expired_at(self, now: datetime) -> bool:
        return self.status is OfferStatus.OPEN and now >= self.expires_at

    def close(self, status: OfferStatus, now: datetime, reason: str | None = None) -> None:
        self.status, self.decided_at, self.failure_reason = status, now, reason


def wants(entry: Entry, block: Block, booking: BookingPolicy) -> bool:
    """Would this entry's protocol be served by this block at all (before preferences)?

    A whole series goes to entries waiting for that same induction; a single slot to entries
    waiting for a booster or a maintenance infusion of the same family.
    """
    protocol = booking.protocols.get(entry.protocol)
    if protocol is None or entry.family != block.family:
        return False
    if block.kind is BlockKind.SERIES:
        return entry.protocol == block.protocol
    return protocol.is_infusion and not protocol.induction


@dataclass
class MatchContext:
    tz: ZoneInfo
    booking: BookingPolicy
    now: datetime
    tried: set[UUID] = field(default_factory=set)
    """Entries this block was offered to before (declined, expired, failed, withdrawn)."""
    busy: set[UUID] = field(default_factory=set)
    """Entries with a live offer of another block: one offer at a time per entry."""


def candidates(block: Block, queue: Sequence[Entry], context: MatchContext) -> list[Entry]:
    """Entries in queue order that this block would fully serve: protocol, dates, preferences."""
    return [
        entry
        for entry in queue
        if entry.status is EntryStatus.ACTIVE
        and entry.id not in context.tried
        and entry.id not in context.busy
        and wants(entry, block, context.booking)
        and entry.can_attend(block.slots, context.tz)
    ]


def offer_expiry(made_at: datetime, first_start: datetime, expiry: timedelta) -> datetime:
    """Never later than the first slot's start: an offer for a slot that began is worthless."""
    return min(made_at + expiry, first_start)


def protocol_family(booking: BookingPolicy, protocol: str, condition: str | None) -> Family | None:
    """The family an entry for `protocol` waits in; maintenance follows the patient's condition."""
    policy = booking.protocols.get(protocol)
    if policy is None or not policy.is_infusion:
        return None
    return policy.family_for(condition)


__all__ = [
    "WEEKDAYS",
    "Block",
    "BlockKind",
    "BlockStatus",
    "Entry",
    "EntryStatus",
    "MatchContext",
    "Offer",
    "OfferStatus",
    "Preferences",
    "Priority",
    "Slot",
    "TimeWindow",
    "candidates",
    "offer_expiry",
    "protocol_family",
    "queue_order",
    "rank_for_position",
    "wants",
]

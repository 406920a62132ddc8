"""The figures the clinic tracks: how fast waitlisted patients reach their first infusion, and
how many released slots the waitlist refills, and how fast."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from clinic_shared.uow import SqlUnitOfWork
from waitlist.domain.model import BlockStatus, EntryStatus
from waitlist.service_layer.offers import repository

FIRST_INFUSION_GOAL = timedelta(days=7)


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 2), "p90": round(p90, 2)}


async def figures(since: datetime, until: datetime, uow: SqlUnitOfWork) -> dict[str, Any]:
    """Entries created and slots released in [since, until)."""
    repo = repository(uow)
    entries = [
        e for e in await repo.entries(statuses=list(EntryStatus)) if since <= e.created_at < until
    ]
    reached = [
        (e.first_infusion_at - e.created_at).total_seconds() / 86400
        for e in entries
        if e.first_infusion_at is not None
    ]
    within_goal = sum(1 for days in reached if days <= FIRST_INFUSION_GOAL.days)
    blocks = [b for b in await repo.blocks() if since <= b.released_at < until]
    released = sum(len(b.slots) for b in blocks if b.parent_id is None)
    booked = [b for b in blocks if b.status is BlockStatus.BOOKED and b.decided_at is not None]
    refill_minutes = [
        (b.decided_at - b.released_at).total_seconds() / 60
        for b in booked
        for _ in b.slots
        if b.decided_at is not None
    ]
    return {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "entry_to_first_infusion": {
            "entries": len(entries),
            "reached_first_infusion": len(reached),
            "still_waiting": sum(1 for e in entries if e.status is EntryStatus.ACTIVE),
            "days": _spread(reached),
            "goal_days": FIRST_INFUSION_GOAL.days,
            "within_goal": within_goal,
            "within_goal_share": round(within_goal / len(reached), 3) if reached else None,
        },
        "released_slots": {
            "released": released,
            "refilled": len(refill_minutes),
            "unclaimed": sum(len(b.slots) for b in blocks if b.status is BlockStatus.UNCLAIMED),
            "refilled_share": round(len(refill_minutes) / released, 3) if released else None,
            "minutes_to_refill": _spread(refill_minutes),
        },
    }

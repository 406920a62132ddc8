"""Waitlist's repository over SQL: entries, blocks and offers as domain objects.

Every change to a block's offers happens under the block's row lock (`lock_block`), taken
before any offer or entry lock, so concurrent consumers, dispatchers and API calls serialize
per block and never deadlock on one another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from clinic_shared.policy import Family
from waitlist.adapters.orm import BlockRow, EntryRow, OfferRow
from waitlist.domain.model import (
    LIVE_OFFER_STATUSES,
    WAITING_STATUSES,
    Block,
    BlockKind,
    BlockStatus,
    Entry,
    EntryStatus,
    Offer,
    OfferStatus,
    Preferences,
    Priority,
    Slot,
    TimeWindow,
    queue_order,
)

ENTRY = EntryRow.__table__
BLOCK = BlockRow.__table__
OFFER = OfferRow.__table__


def slots_json(slots: Iterable[Slot]) -> list[dict[str, Any]]:
    return [
        {
            "appointment_id": str(slot.appointment_id),
            "resource_id": slot.resource_id,
            "start": slot.start.isoformat(),
            "end": slot.end.isoformat(),
        }
        for slot in slots
    ]


def slots_from_json(rows: Iterable[dict[str, Any]]) -> list[Slot]:
    return [
        Slot(
            appointment_id=UUID(row["appointment_id"]),
            resource_id=row["resource_id"],
            start=datetime.fromisoformat(row["start"]),
            end=datetime.fromisoformat(row["end"]),
        )
        for row in rows
    ]


def _entry_values(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "patient_id": entry.patient_id,
        "protocol": entry.protocol,
        "family": entry.family.value,
        "earliest_start": entry.earliest_start,
        "weekdays": sorted(entry.preferences.weekdays),
        "windows": [
            {"start_time": w.start.isoformat("minutes"), "end_time": w.end.isoformat("minutes")}
            for w in entry.preferences.windows
        ],
        "priority": entry.priority.value,
        "rank": entry.rank,
        "status": entry.status.value,
        "created_at": entry.created_at,
        "created_by": entry.created_by,
        "fulfilled_at": entry.fulfilled_at,
        "first_infusion_at": entry.first_infusion_at,
    }


def _entry(row: sa.RowMapping) -> Entry:
    return Entry(
        id=row["id"],
        patient_id=row["patient_id"],
        protocol=row["protocol"],
        family=Family(row["family"]),
        earliest_start=row["earliest_start"],
        preferences=Preferences(
            weekdays=frozenset(row["weekdays"]),
            windows=tuple(
                TimeWindow(time.fromisoformat(w["start_time"]), time.fromisoformat(w["end_time"]))
                for w in row["windows"]
            ),
        ),
        priority=Priority(row["priority"]),
        created_at=row["created_at"],
        rank=row["rank"],
        status=EntryStatus(row["status"]),
        created_by=row["created_by"],
        fulfilled_at=row["fulfilled_at"],
        first_infusion_at=row["first_infusion_at"],
    )


def _block_values(block: Block) -> dict[str, Any]:
    return {
        "id": block.id,
        "hold_id": block.hold_id,
        "parent_id": block.parent_id,
        "kind": block.kind.value,
        "protocol": block.protocol,
        "family": block.family.value,
        "slots": slots_json(block.slots),
        "slot_count": len(block.slots),
        "status": block.status.value,
        "released_at": block.released_at,
        "decided_at": block.decided_at,
    }


def _block(row: sa.RowMapping) -> Block:
    return Block(
        id=row["id"],
        hold_id=row["hold_id"],
        parent_id=row["parent_id"],
        kind=BlockKind(row["kind"]),
        protocol=row["protocol"],
        family=Family(row["family"]),
        slots=slots_from_json(row["slots"]),
        status=BlockStatus(row["status"]),
        released_at=row["released_at"],
        decided_at=row["decided_at"],
    )


def _offer_values(offer: Offer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "block_id": offer.block_id,
        "hold_id": offer.hold_id,
        "entry_id": offer.entry_id,
        "patient_id": offer.patient_id,
        "protocol": offer.protocol,
        "slots": slots_json(offer.slots),
        "status": offer.status.value,
        "manual": offer.manual,
        "made_by": offer.made_by,
        "made_at": offer.made_at,
        "expires_at": offer.expires_at,
        "decided_at": offer.decided_at,
        "failure_reason": offer.failure_reason,
        "course_id": offer.course_id,
    }


def _offer(row: sa.RowMapping) -> Offer:
    return Offer(
        id=row["id"],
        block_id=row["block_id"],
        hold_id=row["hold_id"],
        entry_id=row["entry_id"],
        patient_id=row["patient_id"],
        protocol=row["protocol"],
        slots=slots_from_json(row["slots"]),
        status=OfferStatus(row["status"]),
        manual=row["manual"],
        made_by=row["made_by"],
        made_at=row["made_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
        failure_reason=row["failure_reason"],
        course_id=row["course_id"],
    )


class WaitlistRepository:
    def __init__(self, session: AsyncSession, *, postgres: bool) -> None:
        self._session = session
        self._postgres = postgres

    async def _rows(self, statement: sa.Select[Any]) -> Sequence[sa.RowMapping]:
        return (await self._session.execute(statement)).mappings().all()

    async def _one(self, statement: sa.Select[Any], for_update: bool) -> sa.RowMapping | None:
        if for_update and self._postgres:
            statement = statement.with_for_update()
        return (await self._session.execute(statement)).mappings().first()

    # entries -----------------------------------------------------------------------------

    async def add_entry(self, entry: Entry) -> None:
        await self._session.execute(sa.insert(ENTRY).values(_entry_values(entry)))

    async def save_entry(self, entry: Entry) -> None:
        await self._session.execute(
            sa.update(ENTRY).where(ENTRY.c.id == entry.id).values(_entry_values(entry))
        )

    async def get_entry(self, entry_id: UUID, *, for_update: bool = False) -> Entry | None:
        row = await self._one(sa.select(ENTRY).where(ENTRY.c.id == entry_id), for_update)
        return _entry(row) if row else None

    async def entries(
        self,
        *,
        statuses: Sequence[EntryStatus] = WAITING_STATUSES,
        patient_id: UUID | None = None,
        family: Family | None = None,
        protocol: str | None = None,
    ) -> list[Entry]:
        """Entries in queue order (priority, then rank)."""
        statement = sa.select(ENTRY).where(ENTRY.c.status.in_([s.value for s in statuses]))
        if patient_id is not None:
            statement = statement.where(ENTRY.c.patient_id == patient_id)
        if family is not None:
            statement = statement.where(ENTRY.c.family == family.value)
        if protocol is not None:
            statement = statement.where(ENTRY.c.protocol == protocol)
        return queue_order(_entry(row) for row in await self._rows(statement))

    async def record_first_infusion(self, patient_id: UUID, at: datetime) -> int:
        """The patient's first infusion since joining: on each entry made before it, once."""
        result = await self._session.execute(
            sa.update(ENTRY)
            .where(
                ENTRY.c.patient_id == patient_id,
                ENTRY.c.first_infusion_at.is_(None),
                ENTRY.c.created_at <= at,
                ENTRY.c.status != EntryStatus.REMOVED.value,
            )
            .values(first_infusion_at=at)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # blocks ------------------------------------------------------------------------------

    async def add_blocks(self, blocks: Sequence[Block]) -> None:
        await self._session.execute(sa.insert(BLOCK), [_block_values(b) for b in blocks])

    async def save_block(self, block: Block) -> None:
        await self._session.execute(
            sa.update(BLOCK)
            .where(BLOCK.c.id == block.id)
            .values(status=block.status.value, decided_at=block.decided_at)
        )

    async def get_block(self, block_id: UUID, *, for_update: bool = False) -> Block | None:
        row = await self._one(sa.select(BLOCK).where(BLOCK.c.id == block_id), for_update)
        return _block(row) if row else None

    async def blocks(self, status: BlockStatus | None = None) -> list[Block]:
        statement = sa.select(BLOCK).order_by(BLOCK.c.released_at, BLOCK.c.id)
        if status is not None:
            statement = statement.where(BLOCK.c.status == status.value)
        return [_block(row) for row in await self._rows(statement)]

    # offers ------------------------------------------------------------------------------

    async def add_offer(self, offer: Offer) -> None:
        await self._session.execute(sa.insert(OFFER).values(_offer_values(offer)))

    async def save_offer(self, offer: Offer) -> None:
        await self._session.execute(
            sa.update(OFFER)
            .where(OFFER.c.id == offer.id)
            .values(
                status=offer.status.value,
                decided_at=offer.decided_at,
                failure_reason=offer.failure_reason,
                course_id=offer.course_id,
            )
        )

    async def get_offer(self, offer_id: UUID, *, for_update: bool = False) -> Offer | None:
        row = await self._one(sa.select(OFFER).where(OFFER.c.id == offer_id), for_update)
        return _offer(row) if row else None

    async def offers(
        self,
        *,
        patient_id: UUID | None = None,
        entry_id: UUID | None = None,
        block_ids: Sequence[UUID] | None = None,
        statuses: Sequence[OfferStatus] | None = None,
    ) -> list[Offer]:
        statement = sa.select(OFFER).order_by(OFFER.c.made_at, OFFER.c.id)
        if patient_id is not None:
            statement = statement.where(OFFER.c.patient_id == patient_id)
        if entry_id is not None:
            statement = statement.where(OFFER.c.entry_id == entry_id)
        if block_ids is not None:
            statement = statement.where(OFFER.c.block_id.in_(block_ids))
        if statuses is not None:
            statement = statement.where(OFFER.c.status.in_([s.value for s in statuses]))
        return [_offer(row) for row in await self._rows(statement)]

    async def entries_tried_and_busy(self, block_id: UUID) -> tuple[set[UUID], set[UUID]]:
        """Entries this block was offered to (whatever came of it), and entries holding a live
        offer of any block: one query."""
        live = [s.value for s in LIVE_OFFER_STATUSES]
        rows = await self._session.execute(
            sa.select(OFFER.c.entry_id, OFFER.c.block_id, OFFER.c.status).where(
                sa.or_(OFFER.c.block_id == block_id, OFFER.c.status.in_(live))
            )
        )
        tried, busy = set(), set()
        for entry_id, offered_block, status in rows:
            if offered_block == block_id:
                tried.add(entry_id)
            if status in live:
                busy.add(entry_id)
        return tried, busy

    async def claim_due_offer(self, now: datetime) -> UUID | None:
        """An open offer past its expiry, its block locked; blocks others hold are skipped."""
        statement = (
            sa.select(OFFER.c.id)
            .join(BLOCK, BLOCK.c.id == OFFER.c.block_id)
            .where(OFFER.c.status == OfferStatus.OPEN.value, OFFER.c.expires_at <= now)
            .order_by(OFFER.c.expires_at)
            .limit(1)
        )
        if self._postgres:
            statement = statement.with_for_update(of=BLOCK, skip_locked=True)
        return (await self._session.execute(statement)).scalar()

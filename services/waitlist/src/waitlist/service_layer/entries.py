"""Waitlist entries: joining, the ordered queue, a scheduler's edits, leaving.

New entries and edits that could make an entry fit are not matched against blocks already on
offer: a block's offer moves on only when it is declined, expires or fails, and then the
queue as it stands decides.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date
from uuid import UUID

from clinic_shared.refusals import Conflict, InvalidRequest, NotFound
from clinic_shared.uow import SqlUnitOfWork
from waitlist.domain.model import (
    WAITING_STATUSES,
    Entry,
    EntryStatus,
    Offer,
    OfferStatus,
    Preferences,
    Priority,
    protocol_family,
    rank_for_position,
)
from waitlist.domain.ports import PatientFacts
from waitlist.service_layer.offers import Requester, lock_offer, repository, withdraw


@dataclass(frozen=True)
class NewEntry:
    patient_id: UUID
    protocol: str
    earliest_start: date
    preferences: Preferences
    priority: Priority
    created_by: str


async def add_entry(command: NewEntry, facts: PatientFacts | None, uow: SqlUnitOfWork) -> Entry:
    """`facts`: what booking knows of the patient, looked up before the transaction began."""
    protocol = uow.policy.booking.protocols.get(command.protocol)
    if protocol is None or not protocol.is_infusion:
        raise InvalidRequest(
            "unknown_protocol", f"{command.protocol!r} is not an infusion protocol of this clinic."
        )
    if facts is None:
        raise NotFound("patient")
    family = protocol_family(uow.policy.booking, command.protocol, facts.condition)
    if family is None:
        raise Conflict(
            "condition_unknown",
            "The patient's intake names no condition, which a maintenance entry needs.",
        )
    repo = repository(uow)
    for waiting in await repo.entries(patient_id=command.patient_id):
        if waiting.protocol == command.protocol:
            raise Conflict(
                "already_waitlisted",
                "The patient is on the waitlist for this protocol already.",
                entry_id=str(waiting.id),
            )
    now = uow.clock.now()
    entry = Entry(
        id=uuid.uuid4(),
        patient_id=command.patient_id,
        protocol=command.protocol,
        family=family,
        earliest_start=command.earliest_start,
        preferences=command.preferences,
        priority=command.priority,
        created_at=now,
        rank=now.timestamp(),
        created_by=command.created_by,
    )
    await repo.add_entry(entry)
    return entry


async def get_entry(entry_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> Entry:
    entry = await repository(uow).get_entry(entry_id)
    if entry is None or not requester.may_see(entry.patient_id):
        raise NotFound("entry")
    return entry


async def queue(uow: SqlUnitOfWork, *, protocol: str | None = None) -> list[Entry]:
    """The waiting entries (active and paused) in the order matching walks them."""
    return await repository(uow).entries(statuses=WAITING_STATUSES, protocol=protocol)


async def patient_entries(patient_id: UUID, uow: SqlUnitOfWork) -> list[Entry]:
    return await repository(uow).entries(statuses=list(EntryStatus), patient_id=patient_id)


@dataclass(frozen=True)
class EntryChanges:
    """A scheduler's edit; None leaves a field as it is."""

    position: int | None = None
    """1-based place among the waiting entries of the same priority."""
    paused: bool | None = None
    priority: Priority | None = None
    earliest_start: date | None = None
    preferences: Preferences | None = None


async def update_entry(entry_id: UUID, changes: EntryChanges, uow: SqlUnitOfWork) -> Entry:
    repo = repository(uow)
    entry = await repo.get_entry(entry_id, for_update=True)
    if entry is None:
        raise NotFound("entry")
    if entry.status not in WAITING_STATUSES:
        raise Conflict("entry_closed", f"The entry is {entry.status.value}.")
    if changes.priority is not None and changes.priority is not entry.priority:
        # A new priority puts the entry last of its new group unless a position is given.
        entry = replace(entry, priority=changes.priority, rank=uow.clock.now().timestamp())
    if changes.earliest_start is not None:
        entry.earliest_start = changes.earliest_start
    if changes.preferences is not None:
        entry.preferences = changes.preferences
    if changes.paused is not None:
        entry.status = EntryStatus.PAUSED if changes.paused else EntryStatus.ACTIVE
    if changes.position is not None:
        peers = [
            other
            for other in await repo.entries(statuses=WAITING_STATUSES)
            if other.priority is entry.priority and other.id != entry.id
        ]
        entry.rank = rank_for_position(peers, changes.position)
    await repo.save_entry(entry)
    return entry


async def remove_entry(entry_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> Entry:
    """The entry leaves the queue; an open offer it holds is withdrawn and its block moves on."""
    repo = repository(uow)
    entry = await repo.get_entry(entry_id)
    if entry is None or not requester.may_see(entry.patient_id):
        raise NotFound("entry")
    # Locks in the order every path takes them: the offer's block, the offer, then the entry.
    held = [
        await lock_offer(live.id, repo)
        for live in await repo.offers(entry_id=entry.id, statuses=[OfferStatus.OPEN])
    ]
    entry = await repo.get_entry(entry_id, for_update=True) or entry
    if entry.status is EntryStatus.REMOVED:
        return entry
    if entry.status is EntryStatus.FULFILLED:
        raise Conflict("entry_closed", "The entry was fulfilled: its offer was booked.")
    entry.status = EntryStatus.REMOVED  # first, so the withdrawn block cannot come back to it
    await repo.save_entry(entry)
    for block, offer in held:
        await withdraw(block, offer, "entry_removed", uow, repo)
    return entry


async def history(entry_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> list[Offer]:
    entry = await get_entry(entry_id, requester, uow)
    return await repository(uow).offers(entry_id=entry.id)

"""Released blocks, the offers made of them, and every way an offer ends.

The saga with booking, over events:
1. booking holds released slots and publishes `booking.block.released.v1`;
2. here the block is offered to the first entry in queue order that it fits whole
   (`waitlist.offer.made.v1`); nobody fits a series: it is split into single slots for booster
   and maintenance entries; nobody fits a slot: `waitlist.slots.unclaimed.v1` and booking opens it;
3. the patient accepts (`waitlist.offer.accepted.v1`; the offer reads `accepting`), declines, or
   lets it expire (the dispatcher's due-queue); decline and expiry move the block on;
4. booking answers `booking.hold.booked.v1` (the offer reads `accepted`, the entry is fulfilled)
   or `booking.hold.booking_rejected.v1` (the offer `failed`, the block moves on).

Every step runs under the block's row lock, taken first, so there is one live offer per block
whatever runs concurrently (two consumers, the dispatcher, the API); a partial unique index
backs that up. Handlers check the state they find, so a redelivered event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from clinic_shared.consumer import EventContext
from clinic_shared.contracts import booking, waitlist
from clinic_shared.policy import Family
from clinic_shared.refusals import Conflict, NotFound
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory
from waitlist.adapters.repository import WaitlistRepository
from waitlist.domain.model import (
    LIVE_OFFER_STATUSES,
    WAITING_STATUSES,
    Block,
    BlockKind,
    BlockStatus,
    Entry,
    EntryStatus,
    MatchContext,
    Offer,
    OfferStatus,
    Slot,
    candidates,
    offer_expiry,
    wants,
)

# Booking's refusals that mean the slots are no longer held: offering them again is pointless.
_HOLD_GONE = frozenset({"hold_not_found", "slots_not_held", "slot_in_past"})


def repository(uow: SqlUnitOfWork) -> WaitlistRepository:
    return WaitlistRepository(uow.session, postgres=uow.is_postgres)


@dataclass(frozen=True)
class Requester:
    """Who asks: `patient_id` is set for a patient's token, and limits them to their own."""

    subject: str
    patient_id: UUID | None = None

    def may_see(self, patient_id: UUID) -> bool:
        return self.patient_id is None or self.patient_id == patient_id


Answer = Callable[[UUID, Requester, SqlUnitOfWork], Awaitable[Offer]]
"""A patient's answer to an offer: `accept` or `decline`."""


# the block's way through the queue -----------------------------------------------------------


async def on_block_released(
    event: booking.BlockReleased, context: EventContext, uow: SqlUnitOfWork
) -> None:
    repo = repository(uow)
    if await repo.get_block(event.hold_id) is not None:
        return  # this hold reached the waitlist before
    block = Block(
        id=event.hold_id,
        hold_id=event.hold_id,
        kind=BlockKind(event.kind),
        protocol=event.protocol,
        family=Family(event.family),
        slots=[
            Slot(s.appointment_id, s.resource_id, s.start, s.end)
            for s in sorted(event.slots, key=lambda s: s.start)
        ],
        released_at=event.released_at,
    )
    await repo.add_blocks([block])
    await move_on(block, uow, repo)


async def move_on(block: Block, uow: SqlUnitOfWork, repo: WaitlistRepository) -> Offer | None:
    """Offer the block to the next entry it fits; split a series nobody fits; else give it up.

    The caller holds the block's lock (or has just created the block).
    """
    now = uow.clock.now()
    if block.first_start > now:
        tried, busy = await repo.entries_tried_and_busy(block.id)
        context = MatchContext(
            tz=uow.policy.clinic.tz, booking=uow.policy.booking, now=now, tried=tried, busy=busy
        )
        queue = await repo.entries(statuses=[EntryStatus.ACTIVE], family=block.family)
        for candidate in candidates(block, queue, context):
            entry = await repo.get_entry(candidate.id, for_update=True)
            if entry is None or entry.status is not EntryStatus.ACTIVE:
                continue
            if await repo.offers(entry_id=entry.id, statuses=LIVE_OFFER_STATUSES):
                continue  # offered another block since the queue was read
            return await make_offer(block, entry, uow, repo, made_by="matching")
        if block.kind is BlockKind.SERIES:
            children = block.split(uuid.uuid4() for _ in block.slots)
            block.decided_at = now
            await repo.save_block(block)
            await repo.add_blocks(children)
            for child in children:
                await move_on(child, uow, repo)
            return None
    await _give_up(block, uow, repo)
    return None


async def make_offer(
    block: Block,
    entry: Entry,
    uow: SqlUnitOfWork,
    repo: WaitlistRepository,
    *,
    made_by: str,
    manual: bool = False,
) -> Offer:
    now = uow.clock.now()
    expiry = uow.policy.waitlist.offer_expiry(now, block.first_start)
    offer = Offer(
        id=uuid.uuid4(),
        block_id=block.id,
        hold_id=block.hold_id,
        entry_id=entry.id,
        patient_id=entry.patient_id,
        protocol=entry.protocol,
        slots=list(block.slots),
        made_at=now,
        expires_at=offer_expiry(now, block.first_start, expiry),
        manual=manual,
        made_by=made_by,
    )
    if block.status is not BlockStatus.OFFERED:
        block.status = BlockStatus.OFFERED
        await repo.save_block(block)
    await repo.add_offer(offer)
    await uow.publish(
        waitlist.OfferMade(
            offer_id=offer.id,
            entry_id=entry.id,
            patient_id=entry.patient_id,
            hold_id=block.hold_id,
            block_id=block.id,
            appointment_ids=offer.appointment_ids,
            protocol=offer.protocol,
            first_slot_start=block.first_start,
            expires_at=offer.expires_at,
            made_at=now,
            manual=manual,
        )
    )
    return offer


async def _close(
    offer: Offer,
    outcome: OfferStatus,
    uow: SqlUnitOfWork,
    repo: WaitlistRepository,
    reason: str | None = None,
) -> None:
    now = uow.clock.now()
    offer.close(outcome, now, reason)
    await repo.save_offer(offer)
    await uow.publish(
        waitlist.OfferClosed(
            offer_id=offer.id,
            entry_id=offer.entry_id,
            patient_id=offer.patient_id,
            hold_id=offer.hold_id,
            outcome=outcome.value,
            reason=reason,
            closed_at=now,
        )
    )


async def lock_offer(
    offer_id: UUID, repo: WaitlistRepository, requester: Requester | None = None
) -> tuple[Block, Offer]:
    """The offer and its block, locked in the one order every path uses: block, then offer."""
    offer = await repo.get_offer(offer_id)
    if offer is None or (requester is not None and not requester.may_see(offer.patient_id)):
        raise NotFound("offer")
    block = await repo.get_block(offer.block_id, for_update=True)
    locked = await repo.get_offer(offer_id, for_update=True)
    if block is None or locked is None:
        raise NotFound("offer")
    return block, locked


# the patient's answers -----------------------------------------------------------------------


async def accept(offer_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> Offer:
    """The patient takes the offer: booking is asked to book the held slots for them."""
    repo = repository(uow)
    _block, offer = await lock_offer(offer_id, repo, requester)
    if offer.status in (OfferStatus.ACCEPTING, OfferStatus.ACCEPTED):
        return offer  # accepted before: the same answer
    now = uow.clock.now()
    if offer.status is OfferStatus.EXPIRED or offer.is_expired_at(now):
        raise Conflict(
            "offer_expired", "The offer has expired.", expires_at=offer.expires_at.isoformat()
        )
    if offer.status is not OfferStatus.OPEN:
        raise Conflict("offer_closed", f"The offer is {offer.status.value}.")
    offer.status = OfferStatus.ACCEPTING
    await repo.save_offer(offer)
    await uow.publish(
        waitlist.OfferAccepted(
            offer_id=offer.id,
            hold_id=offer.hold_id,
            patient_id=offer.patient_id,
            appointment_ids=offer.appointment_ids,
            protocol=offer.protocol,
            accepted_at=now,
        )
    )
    return offer


async def decline(offer_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> Offer:
    """The patient passes: the offer closes and the block goes to the next matching entry."""
    repo = repository(uow)
    block, offer = await lock_offer(offer_id, repo, requester)
    if offer.status is OfferStatus.DECLINED:
        return offer
    if offer.status is not OfferStatus.OPEN or offer.is_expired_at(uow.clock.now()):
        state = "expired" if offer.status is OfferStatus.OPEN else offer.status.value
        raise Conflict("offer_closed", f"The offer is {state}.")
    await _close(offer, OfferStatus.DECLINED, uow, repo)
    await move_on(block, uow, repo)
    return offer


# durable expiry ------------------------------------------------------------------------------


class OfferExpiry:
    """The due-queue of open offers by `expires_at`: each expired offer moves its block on."""

    name = "offer_expiry"

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            repo = repository(uow)
            due = await repo.claim_due_offer(uow.clock.now())
            if due is None:
                return False
            block, offer = await lock_offer(due, repo)
            if offer.is_expired_at(uow.clock.now()):
                await _close(offer, OfferStatus.EXPIRED, uow, repo)
                await move_on(block, uow, repo)
            await uow.commit()
            return True


# booking's answers ---------------------------------------------------------------------------


async def on_hold_booked(
    event: booking.HoldBooked, context: EventContext, uow: SqlUnitOfWork
) -> None:
    repo = repository(uow)
    if await repo.get_offer(event.offer_id) is None:
        return
    block, offer = await lock_offer(event.offer_id, repo)
    if offer.status is not OfferStatus.ACCEPTING:
        return
    now = uow.clock.now()
    offer.close(OfferStatus.ACCEPTED, now)
    offer.course_id = event.course_id
    await repo.save_offer(offer)
    block.status, block.decided_at = BlockStatus.BOOKED, now
    await repo.save_block(block)
    entry = await repo.get_entry(offer.entry_id, for_update=True)
    if entry is not None:
        entry.status, entry.fulfilled_at = EntryStatus.FULFILLED, now
        await repo.save_entry(entry)
    await uow.publish(
        waitlist.OfferBooked(
            offer_id=offer.id,
            entry_id=offer.entry_id,
            patient_id=offer.patient_id,
            hold_id=offer.hold_id,
            course_id=event.course_id,
            appointment_ids=event.appointment_ids,
            booked_at=now,
        )
    )


async def on_hold_booking_rejected(
    event: booking.HoldBookingRejected, context: EventContext, uow: SqlUnitOfWork
) -> None:
    repo = repository(uow)
    if await repo.get_offer(event.offer_id) is None:
        return
    block, offer = await lock_offer(event.offer_id, repo)
    if offer.status is not OfferStatus.ACCEPTING:
        return
    await _close(offer, OfferStatus.FAILED, uow, repo, reason=event.reason)
    if event.reason in _HOLD_GONE:
        await _give_up(block, uow, repo)  # offering slots booking no longer holds helps nobody
        return
    await move_on(block, uow, repo)


async def _give_up(block: Block, uow: SqlUnitOfWork, repo: WaitlistRepository) -> None:
    """Nobody takes these slots: booking is told to open them to everybody."""
    now = uow.clock.now()
    block.status, block.decided_at = BlockStatus.UNCLAIMED, now
    await repo.save_block(block)
    await uow.publish(
        waitlist.SlotsUnclaimed(
            hold_id=block.hold_id, appointment_ids=block.appointment_ids, decided_at=now
        )
    )


# schedulers' tools ---------------------------------------------------------------------------


async def manual_offer(block_id: UUID, entry_id: UUID, scheduler: str, uow: SqlUnitOfWork) -> Offer:
    """A scheduler offers a held block to a chosen entry, replacing the block's open offer."""
    repo = repository(uow)
    block = await repo.get_block(block_id, for_update=True)
    if block is None:
        raise NotFound("block")
    if block.status is not BlockStatus.OFFERED:
        raise Conflict(
            "block_not_held", f"The block is {block.status.value}; its slots are not held."
        )
    live = await repo.offers(block_ids=[block.id], statuses=LIVE_OFFER_STATUSES)
    current = await repo.get_offer(live[0].id, for_update=True) if live else None
    if current is not None and current.status is OfferStatus.ACCEPTING:
        raise Conflict("offer_accepting", "The current offer was accepted; booking is on it.")
    if current is not None and current.entry_id == entry_id:
        raise Conflict("already_offered", "The block is offered to this entry now.")
    entry = await repo.get_entry(entry_id, for_update=True)
    if entry is None:
        raise NotFound("entry")
    if entry.status not in WAITING_STATUSES:
        raise Conflict("entry_closed", f"The entry is {entry.status.value}.")
    if not wants(entry, block, uow.policy.booking):
        raise Conflict(
            "protocol_mismatch",
            f"A {block.kind.value} {block.protocol} block does not serve a {entry.protocol} entry.",
        )
    if await repo.offers(entry_id=entry.id, statuses=LIVE_OFFER_STATUSES):
        raise Conflict("entry_has_offer", "The entry has another offer open.")
    if current is not None:
        await _close(current, OfferStatus.WITHDRAWN, uow, repo, reason="replaced")
    return await make_offer(block, entry, uow, repo, made_by=scheduler, manual=True)


async def withdraw(
    block: Block, offer: Offer, reason: str, uow: SqlUnitOfWork, repo: WaitlistRepository
) -> None:
    """Take back an open offer (both locked by the caller); the block moves on."""
    if offer.status is OfferStatus.OPEN:
        await _close(offer, OfferStatus.WITHDRAWN, uow, repo, reason=reason)
        await move_on(block, uow, repo)


async def list_blocks(uow: SqlUnitOfWork) -> list[Block]:
    return await repository(uow).blocks()


async def get_block(block_id: UUID, uow: SqlUnitOfWork) -> Block:
    block = await repository(uow).get_block(block_id)
    if block is None:
        raise NotFound("block")
    return block


async def get_offer(offer_id: UUID, requester: Requester, uow: SqlUnitOfWork) -> Offer:
    offer = await repository(uow).get_offer(offer_id)
    if offer is None or not requester.may_see(offer.patient_id):
        raise NotFound("offer")
    return offer


async def list_offers(
    requester: Requester,
    uow: SqlUnitOfWork,
    *,
    patient_id: UUID | None = None,
    statuses: list[OfferStatus] | None = None,
) -> list[Offer]:
    if requester.patient_id is not None:
        if patient_id is not None and patient_id != requester.patient_id:
            return []
        patient_id = requester.patient_id
    return await repository(uow).offers(patient_id=patient_id, statuses=statuses)


async def on_infusion_completed(
    event: booking.InfusionCompleted, context: EventContext, uow: SqlUnitOfWork
) -> None:
    """For the clinic's figure: time from joining the waitlist to the first infusion."""
    await repository(uow).record_first_infusion(event.patient_id, event.completed_at)

"""Waitlist's HTTP API: `create_app(settings)`.

Entries (join, the ordered queue, a scheduler's edits, leave), offers (accept, decline, a
scheduler's manual offer, history), released blocks and the clinic's figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from clinic_shared.auth import STAFF_ROLES, Principal, Role, require_roles
from clinic_shared.clock import Clock
from clinic_shared.http import DateTimeText, create_service_app
from clinic_shared.idempotency import run_idempotent
from clinic_shared.problems import ProblemError
from clinic_shared.refusals import answered
from clinic_shared.settings import ServiceSettings
from clinic_shared.uow import SqlUnitOfWork
from waitlist.adapters.booking_directory import BookingDirectory
from waitlist.bootstrap import bootstrap
from waitlist.config import WaitlistSettings
from waitlist.domain.model import (
    WEEKDAYS,
    Block,
    Entry,
    Offer,
    OfferStatus,
    Preferences,
    Priority,
    Slot,
    TimeWindow,
)
from waitlist.domain.ports import PatientDirectory
from waitlist.entrypoints import schemas
from waitlist.service_layer import entries, figures, offers
from waitlist.service_layer.offers import Requester

SELF_OR_STAFF = require_roles(Role.PATIENT, *STAFF_ROLES)
SELF_OR_SCHEDULER = require_roles(Role.PATIENT, Role.SCHEDULER, Role.ADMIN)
JOINING = require_roles(Role.PATIENT, Role.SCHEDULER, Role.CLINICIAN, Role.ADMIN)
QUEUE_STAFF = require_roles(Role.SCHEDULER, Role.CLINICIAN, Role.ADMIN)
SCHEDULERS = require_roles(Role.SCHEDULER, Role.ADMIN)
QUEUE_READERS = require_roles(Role.PATIENT, Role.SCHEDULER, Role.CLINICIAN, Role.ADMIN)


def requester(principal: Principal) -> Requester:
    if principal.role is not Role.PATIENT:
        return Requester(subject=principal.subject)
    try:
        return Requester(subject=principal.subject, patient_id=UUID(principal.subject))
    except ValueError as exc:
        raise ProblemError(403, "forbidden", "Not allowed", "The token names no patient.") from exc


def preferences(body: schemas.PreferencesIn) -> Preferences:
    return Preferences(
        weekdays=frozenset(body.weekdays),
        windows=tuple(TimeWindow(w.start_time, w.end_time) for w in body.windows),
    )


def _clock_text(value: time) -> str:
    return value.isoformat("minutes")


def entry_out(entry: Entry, position: int | None = None) -> dict[str, Any]:
    return schemas.EntryOut(
        id=entry.id,
        patient_id=entry.patient_id,
        protocol=entry.protocol,
        family=entry.family.value,
        earliest_start=entry.earliest_start,
        preferences=schemas.PreferencesOut(
            weekdays=sorted(entry.preferences.weekdays, key=WEEKDAYS.index),
            windows=[
                schemas.WindowOut(start_time=_clock_text(w.start), end_time=_clock_text(w.end))
                for w in entry.preferences.windows
            ],
        ),
        priority=entry.priority.value,
        status=entry.status.value,
        created_at=entry.created_at,
        fulfilled_at=entry.fulfilled_at,
        first_infusion_at=entry.first_infusion_at,
        position=position,
    ).model_dump(mode="json")


def slots_out(slots: list[Slot], tz: ZoneInfo) -> list[schemas.SlotOut]:
    return [
        schemas.SlotOut(
            appointment_id=s.appointment_id,
            chair_id=s.resource_id,
            start=s.start.astimezone(tz),
            end=s.end.astimezone(tz),
        )
        for s in slots
    ]


def offer_out(offer: Offer, tz: ZoneInfo) -> dict[str, Any]:
    return schemas.OfferOut(
        id=offer.id,
        entry_id=offer.entry_id,
        patient_id=offer.patient_id,
        block_id=offer.block_id,
        hold_id=offer.hold_id,
        protocol=offer.protocol,
        status=offer.status.value,
        slots=slots_out(offer.slots, tz),
        made_at=offer.made_at,
        expires_at=offer.expires_at.astimezone(tz),
        decided_at=offer.decided_at,
        manual=offer.manual,
        failure_reason=offer.failure_reason,
        course_id=offer.course_id,
    ).model_dump(mode="json")


def block_out(block: Block, tz: ZoneInfo) -> dict[str, Any]:
    return schemas.BlockOut(
        id=block.id,
        hold_id=block.hold_id,
        parent_id=block.parent_id,
        kind=block.kind.value,
        protocol=block.protocol,
        family=block.family.value,
        status=block.status.value,
        slots=slots_out(block.slots, tz),
        released_at=block.released_at,
        decided_at=block.decided_at,
    ).model_dump(mode="json")


def create_app(
    settings: ServiceSettings,
    clock: Clock | None = None,
    directory: PatientDirectory | None = None,
) -> FastAPI:
    infra = bootstrap(settings, clock)
    uow_factory = infra.uow_factory
    tz = infra.policy.clinic.tz
    closers = []
    if directory is None:
        if not isinstance(settings, WaitlistSettings):
            raise TypeError("the waitlist needs WaitlistSettings to reach booking")
        booking = BookingDirectory(settings.booking_url, settings.jwt_secret)
        directory, closers = booking, [booking.close]
    patients: PatientDirectory = directory
    app = create_service_app(
        settings=settings,
        infra=infra,
        on_shutdown=closers,
        title="Clinic waitlist",
        description=(
            "Waitlist entries in priority order, offers of slots released by cancellations "
            "(a whole remaining series as one block), and the clinic's refill figures."
        ),
    )

    # entries -----------------------------------------------------------------------------

    @app.post(
        "/v1/entries",
        status_code=201,
        response_model=schemas.EntryOut,
        tags=["entries"],
        responses={
            404: {"description": "No such patient, or not the caller"},
            409: {"description": "Already waiting for this protocol, or no condition known"},
            503: {"description": "Booking could not be asked about the patient"},
        },
    )
    async def add_entry(
        body: schemas.EntryIn,
        request: Request,
        principal: Annotated[Principal, Depends(JOINING)],
    ) -> JSONResponse:
        asker = requester(principal)
        if body.priority == Priority.URGENT and principal.role is Role.PATIENT:
            raise ProblemError(
                403, "forbidden", "Not allowed", "Only a clinician or scheduler sets urgent."
            )
        if not asker.may_see(body.patient_id):
            raise ProblemError(404, "not_found", "Not found", "No such patient.")
        facts = await patients.lookup(body.patient_id)
        command = entries.NewEntry(
            patient_id=body.patient_id,
            protocol=body.protocol,
            earliest_start=body.earliest_start,
            preferences=preferences(body.preferences),
            priority=Priority(body.priority),
            created_by="patient" if principal.role is Role.PATIENT else "staff",
        )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                entry = await entries.add_entry(command, facts, uow)
            return 201, entry_out(entry)

        return await run_idempotent(
            request, uow_factory, principal, body.model_dump(mode="json"), action
        )

    @app.get("/v1/entries", response_model=schemas.EntryList, tags=["entries"])
    async def list_entries(
        principal: Annotated[Principal, Depends(QUEUE_READERS)],
        protocol: str | None = None,
    ) -> dict[str, Any]:
        """Staff: the waiting queue in offer order. A patient: their own entries."""
        asker = requester(principal)
        async with uow_factory() as uow:
            if asker.patient_id is not None:
                own = await entries.patient_entries(asker.patient_id, uow)
                return {"entries": [entry_out(e) for e in own]}
            waiting = await entries.queue(uow, protocol=protocol)
        return {"entries": [entry_out(e, n) for n, e in enumerate(waiting, start=1)]}

    @app.get("/v1/entries/{entry_id}", response_model=schemas.EntryOut, tags=["entries"])
    async def get_entry(
        entry_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                entry = await entries.get_entry(entry_id, requester(principal), uow)
        return entry_out(entry)

    @app.patch(
        "/v1/entries/{entry_id}",
        response_model=schemas.EntryOut,
        tags=["entries"],
        responses={409: {"description": "The entry is closed"}},
    )
    async def update_entry(
        entry_id: UUID,
        body: schemas.EntryPatch,
        principal: Annotated[Principal, Depends(QUEUE_STAFF)],
    ) -> dict[str, Any]:
        """Reorder (`position`), pause or resume, change priority, dates or preferences."""
        changes = entries.EntryChanges(
            position=body.position,
            paused=body.paused,
            priority=Priority(body.priority) if body.priority else None,
            earliest_start=body.earliest_start,
            preferences=preferences(body.preferences) if body.preferences else None,
        )
        with answered():
            async with uow_factory() as uow:
                entry = await entries.update_entry(entry_id, changes, uow)
                await uow.commit()
        return entry_out(entry)

    @app.delete(
        "/v1/entries/{entry_id}",
        status_code=204,
        tags=["entries"],
        responses={409: {"description": "The entry was fulfilled"}},
    )
    async def remove_entry(
        entry_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)]
    ) -> Response:
        with answered():
            async with uow_factory() as uow:
                await entries.remove_entry(entry_id, requester(principal), uow)
                await uow.commit()
        return Response(status_code=204)

    @app.get("/v1/entries/{entry_id}/offers", response_model=schemas.OfferList, tags=["entries"])
    async def entry_history(
        entry_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> dict[str, Any]:
        """Every offer made to this entry, oldest first, with how each ended."""
        with answered():
            async with uow_factory() as uow:
                made = await entries.history(entry_id, requester(principal), uow)
        return {"offers": [offer_out(o, tz) for o in made]}

    # offers ------------------------------------------------------------------------------

    @app.get("/v1/offers", response_model=schemas.OfferList, tags=["offers"])
    async def list_offers(
        principal: Annotated[Principal, Depends(SELF_OR_STAFF)],
        patient_id: UUID | None = None,
        status: Annotated[list[OfferStatus] | None, Query()] = None,
    ) -> dict[str, Any]:
        async with uow_factory() as uow:
            found = await offers.list_offers(
                requester(principal), uow, patient_id=patient_id, statuses=status
            )
        return {"offers": [offer_out(o, tz) for o in found]}

    @app.get("/v1/offers/{offer_id}", response_model=schemas.OfferOut, tags=["offers"])
    async def get_offer(
        offer_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                offer = await offers.get_offer(offer_id, requester(principal), uow)
        return offer_out(offer, tz)

    async def answer_offer(
        answer: offers.Answer, status: int, offer_id: UUID, request: Request, principal: Principal
    ) -> JSONResponse:
        """The patient's (or a scheduler's) answer to an offer, honouring Idempotency-Key."""
        asker = requester(principal)

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                offer = await answer(offer_id, asker, uow)
            return status, offer_out(offer, tz)

        return await run_idempotent(request, uow_factory, principal, {}, action)

    @app.post(
        "/v1/offers/{offer_id}/accept",
        status_code=202,
        response_model=schemas.OfferOut,
        tags=["offers"],
        responses={409: {"description": "The offer expired or is closed"}},
    )
    async def accept_offer(
        offer_id: UUID,
        request: Request,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> JSONResponse:
        """202: booking books the held slots; the offer reads `accepted` once it has."""
        return await answer_offer(offers.accept, 202, offer_id, request, principal)

    @app.post(
        "/v1/offers/{offer_id}/decline",
        response_model=schemas.OfferOut,
        tags=["offers"],
        responses={409: {"description": "The offer expired or is closed"}},
    )
    async def decline_offer(
        offer_id: UUID,
        request: Request,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> JSONResponse:
        """The offer closes and the slots go to the next matching entry."""
        return await answer_offer(offers.decline, 200, offer_id, request, principal)

    @app.post(
        "/v1/offers",
        status_code=201,
        response_model=schemas.OfferOut,
        tags=["offers"],
        responses={
            404: {"description": "No such block or entry"},
            409: {"description": "The block's slots are not held, or the entry cannot take it"},
        },
    )
    async def manual_offer(
        body: schemas.ManualOfferIn,
        request: Request,
        principal: Annotated[Principal, Depends(SCHEDULERS)],
    ) -> JSONResponse:
        """Offer a held block to a chosen entry; the block's open offer is withdrawn."""

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                offer = await offers.manual_offer(
                    body.block_id, body.entry_id, principal.subject[:64], uow
                )
            return 201, offer_out(offer, tz)

        return await run_idempotent(
            request, uow_factory, principal, body.model_dump(mode="json"), action
        )

    # blocks and figures ------------------------------------------------------------------

    @app.get("/v1/blocks", response_model=schemas.BlockList, tags=["blocks"])
    async def list_blocks(principal: Annotated[Principal, Depends(QUEUE_STAFF)]) -> dict[str, Any]:
        """Released blocks, oldest first, with where each stands."""
        async with uow_factory() as uow:
            found = await offers.list_blocks(uow)
        return {"blocks": [block_out(b, tz) for b in found]}

    @app.get("/v1/blocks/{block_id}", response_model=schemas.BlockOut, tags=["blocks"])
    async def get_block(
        block_id: UUID, principal: Annotated[Principal, Depends(QUEUE_STAFF)]
    ) -> dict[str, Any]:
        with answered():
            async with uow_factory() as uow:
                block = await offers.get_block(block_id, uow)
        return block_out(block, tz)

    @app.get("/v1/figures", tags=["figures"])
    async def clinic_figures(
        principal: Annotated[Principal, Depends(QUEUE_STAFF)],
        since: Annotated[DateTimeText | None, Query(alias="from")] = None,
        until: Annotated[DateTimeText | None, Query(alias="to")] = None,
    ) -> dict[str, Any]:
        """Entry to first infusion (goal: 7 days) and released slots refilled, for a period
        (default: the last 90 days)."""
        now = infra.clock.now()
        until = _aware(until) if until else now
        since = _aware(since) if since else until - timedelta(days=90)
        if since >= until:
            raise ProblemError(
                422, "invalid_period", "Invalid request", "`from` is not before `to`."
            )
        async with uow_factory() as uow:
            return await figures.figures(since, until, uow)

    return app


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ProblemError(422, "invalid_period", "Invalid request", "Give times with an offset.")
    return value.astimezone(UTC)

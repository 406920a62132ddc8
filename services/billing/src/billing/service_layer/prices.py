"""Publishing a price book: a new version from its effective instant on, never backdated."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from billing.domain.pricing import PriceBook, PriceBookInvalid, Tier, initial_price_book
from billing.service_layer.charges import price_book_at, repository
from clinic_shared.refusals import InvalidRequest
from clinic_shared.uow import SqlUnitOfWork


async def current(uow: SqlUnitOfWork, at: datetime | None = None) -> PriceBook:
    return await price_book_at(at or uow.clock.now(), uow)


async def history(uow: SqlUnitOfWork) -> list[PriceBook]:
    """Version 0 (the policy's prices) and every published version, oldest first."""
    return [initial_price_book(uow.policy), *await repository(uow).price_books()]


async def publish(
    infusions: Mapping[str, list[tuple[int, int]]],
    consults: Mapping[str, int],
    fees: Mapping[str, int],
    effective_from: datetime | None,
    created_by: str,
    uow: SqlUnitOfWork,
) -> PriceBook:
    now = uow.clock.now()
    starts = effective_from or now
    if starts < now:
        raise InvalidRequest(
            "effective_from_in_past",
            "A price book takes effect now or later; past charges keep their prices.",
        )
    try:
        book = PriceBook(
            version=0,
            effective_from=starts,
            infusions={f: tuple(Tier(o, c) for o, c in tiers) for f, tiers in infusions.items()},
            consults=dict(consults),
            fees=dict(fees),
            created_by=created_by,
            created_at=now,
        )
    except PriceBookInvalid as exc:
        raise InvalidRequest("invalid_price_book", str(exc)) from exc
    return await repository(uow).add_price_book(book)

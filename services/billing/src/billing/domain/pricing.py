"""The price book: what an infusion, a consult and a fee cost, from a given instant on.

Prices change by new versions, each effective from its instant; a cause (a completed infusion, a
late cancellation) is priced by the version in effect when it happened, and a charge keeps the
amount and version it was priced with. So a change never rewrites past charges. Infusions are
priced by tier: the patient's lifetime infusion ordinal in the family (boosters and maintenance
count) picks the last tier starting at or below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from clinic_shared.policy import Policy

FAMILIES = ("mood", "pain")
FEE_KINDS = ("late_cancellation", "no_show")
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


class PriceBookInvalid(ValueError):
    """A price book that cannot price every infusion, or prices something below zero."""


@dataclass(frozen=True)
class Tier:
    from_ordinal: int
    cents: int


@dataclass(frozen=True)
class Price:
    cents: int
    version: int
    label: str
    """Which price applied, in words a statement can show ("infusions 6 and later")."""


@dataclass(frozen=True)
class PriceBook:
    version: int
    effective_from: datetime
    infusions: Mapping[str, tuple[Tier, ...]]
    consults: Mapping[str, int]
    fees: Mapping[str, int]
    created_by: str = "policy"
    created_at: datetime = BEGINNING

    def __post_init__(self) -> None:
        problems = _problems(self.infusions, self.consults, self.fees)
        if problems:
            raise PriceBookInvalid("; ".join(problems))

    def document(self) -> dict[str, Any]:
        """The prices as plain data: how a version is stored and shown."""
        return {
            "infusions": {
                family: [{"from_ordinal": t.from_ordinal, "cents": t.cents} for t in tiers]
                for family, tiers in self.infusions.items()
            },
            "consults": dict(self.consults),
            "fees": dict(self.fees),
        }

    def infusion(self, family: str, ordinal: int) -> Price:
        tiers = self.infusions[family]
        chosen = next(t for t in reversed(tiers) if t.from_ordinal <= max(ordinal, 1))
        following = [t for t in tiers if t.from_ordinal > chosen.from_ordinal]
        if following:
            label = f"{family} infusions {chosen.from_ordinal}-{following[0].from_ordinal - 1}"
        else:
            label = f"{family} infusions {chosen.from_ordinal} and later"
        return Price(chosen.cents, self.version, label)

    def consult(self, protocol: str) -> Price | None:
        cents = self.consults.get(protocol)
        return None if cents is None else Price(cents, self.version, protocol)

    def fee(self, kind: str) -> Price:
        return Price(self.fees[kind], self.version, f"{kind.replace('_', '-')} fee")


def _problems(
    infusions: Mapping[str, Sequence[Tier]], consults: Mapping[str, int], fees: Mapping[str, int]
) -> list[str]:
    problems = []
    for family in FAMILIES:
        tiers = infusions.get(family)
        if not tiers:
            problems.append(f"infusions.{family}: at least one tier is needed")
            continue
        ordinals = [t.from_ordinal for t in tiers]
        if ordinals[0] != 1:
            problems.append(f"infusions.{family}: the first tier must start at ordinal 1")
        if any(b <= a for a, b in pairwise(ordinals)):
            problems.append(f"infusions.{family}: tiers must start at rising ordinals")
        if any(t.cents < 0 for t in tiers):
            problems.append(f"infusions.{family}: prices cannot be negative")
    unknown = sorted(set(infusions) - set(FAMILIES))
    if unknown:
        problems.append(f"infusions: unknown families {unknown}")
    if any(c < 0 for c in consults.values()):
        problems.append("consults: prices cannot be negative")
    for kind in FEE_KINDS:
        if fees.get(kind, -1) < 0:
            problems.append(f"fees.{kind}: a fee of zero or more is needed")
    return problems


def initial_price_book(policy: Policy) -> PriceBook:
    """Version 0: the policy's prices, in effect until a billing admin publishes a version."""
    book = policy.billing.price_book
    return PriceBook(
        version=0,
        effective_from=BEGINNING,
        infusions={
            family: tuple(Tier(t.from_ordinal, t.cents) for t in tiers)
            for family, tiers in book.infusions.items()
        },
        consults=dict(book.consults),
        fees={
            "late_cancellation": policy.fees.late_cancellation_cents,
            "no_show": policy.fees.no_show_cents,
        },
    )

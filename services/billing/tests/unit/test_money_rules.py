"""The money rules on their own: tiers at every boundary, installment splits, retry days and
the webhook signature."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.adapters.webhook_signature import SignatureRejected, sign, verify
from billing.domain.model import add_months, due_dates, split_installments
from billing.domain.pricing import PriceBook, PriceBookInvalid, Tier, initial_price_book
from clinic_shared.policy import parse_policy

BOOK = initial_price_book(parse_policy())


@pytest.mark.parametrize(
    ("family", "ordinal", "cents"),
    [
        ("mood", 1, 60000),
        ("mood", 5, 60000),
        ("mood", 6, 45000),
        ("mood", 40, 45000),
        ("pain", 1, 120000),
        ("pain", 5, 120000),
        ("pain", 6, 95000),
        ("pain", 12, 95000),
    ],
)
def test_the_default_tiers_price_each_ordinal(family, ordinal, cents):
    assert BOOK.infusion(family, ordinal).cents == cents


def test_a_three_tier_book_picks_the_last_tier_starting_at_or_below_the_ordinal():
    book = PriceBook(
        version=3,
        effective_from=datetime(2027, 1, 1, tzinfo=UTC),
        infusions={
            "mood": (Tier(1, 60000), Tier(6, 45000), Tier(12, 40000)),
            "pain": (Tier(1, 120000),),
        },
        consults={"info_consult": 20000},
        fees={"late_cancellation": 10000, "no_show": 15000},
    )
    assert [book.infusion("mood", n).cents for n in (5, 6, 11, 12, 13)] == [
        60000, 45000, 45000, 40000, 40000,
    ]  # fmt: skip
    assert book.infusion("mood", 7).label == "mood infusions 6-11"
    assert book.infusion("pain", 9).label == "pain infusions 1 and later"


@pytest.mark.parametrize(
    "infusions",
    [
        {"mood": (Tier(2, 100),), "pain": (Tier(1, 100),)},
        {"mood": (Tier(1, 100), Tier(1, 90)), "pain": (Tier(1, 100),)},
        {"mood": (Tier(1, -1),), "pain": (Tier(1, 100),)},
        {"mood": (Tier(1, 100),)},
    ],
)
def test_a_book_that_cannot_price_every_infusion_is_refused(infusions):
    with pytest.raises(PriceBookInvalid):
        PriceBook(0, datetime(2027, 1, 1, tzinfo=UTC), infusions, {}, {"late_cancellation": 0,
                  "no_show": 0})  # fmt: skip


@pytest.mark.parametrize("count", [3, 6, 12])
@pytest.mark.parametrize("amount", [100001, 100000, 99999, 12, 1234567])
def test_installments_sum_to_the_amount_with_the_remainder_first(amount, count):
    parts = split_installments(amount, count)
    assert sum(parts) == amount and len(parts) == count
    assert parts[1:] == [amount // count] * (count - 1)
    assert 0 <= parts[0] - parts[1] < count


@given(st.integers(min_value=12, max_value=10**8), st.sampled_from([3, 6, 12]))
def test_installments_always_sum_exactly(amount, count):
    assert sum(split_installments(amount, count)) == amount


def test_due_dates_keep_the_day_or_fall_on_the_months_last_day():
    assert due_dates(date(2027, 1, 31), 4) == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30),
    ]  # fmt: skip
    assert add_months(date(2027, 12, 15), 12) == date(2028, 12, 15)
    assert add_months(date(2028, 1, 29), 1) == date(2028, 2, 29)


def test_three_retries_are_spread_over_seven_days():
    assert parse_policy().billing.retry_offsets_days() == [2, 5, 7]


NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)


def test_a_signature_made_with_the_secret_within_the_window_is_accepted():
    body = b'{"id":"evt_1"}'
    verify(body, sign(body, "whsec_x", int(NOW.timestamp()) - 299), "whsec_x", NOW, 300)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("v1=abc", "signature_malformed"),
        (sign(b'{"id":"evt_2"}', "whsec_x", int(NOW.timestamp())), "signature_invalid"),
        (sign(b'{"id":"evt_1"}', "whsec_y", int(NOW.timestamp())), "signature_invalid"),
        (sign(b'{"id":"evt_1"}', "whsec_x", int(NOW.timestamp()) - 301), "signature_stale"),
    ],
)
def test_a_missing_forged_or_stale_signature_is_refused(header, code):
    with pytest.raises(SignatureRejected) as refused:
        verify(b'{"id":"evt_1"}', header, "whsec_x", NOW, 300)
    assert refused.value.code == code

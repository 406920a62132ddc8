"""Settlement reconciliation: reading the processor's report and matching it to the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.domain.reconciliation import (
    MAX_SETTLEMENT_LINES,
    OUTCOME_KINDS,
    LedgerTransaction,
    SettlementFormatError,
    SettlementLine,
    parse_settlement,
    reconcile,
)

# Stripe's column order, with two columns we do not read (created, customer_email) left in.
HEADER = (
    "balance_transaction_id,created_utc,created,available_on_utc,currency,gross,fee,net,"
    "reporting_category,source_id,description,customer_email,automatic_payout_id,customer_id,"
    "charge_id,payment_intent_id"
)


def row(
    bt: str,
    created: str,
    gross: str,
    fee: str,
    net: str,
    category: str,
    source: str,
    pi: str = "",
    currency: str = "usd",
    description: str = "",
) -> str:
    return (
        f"{bt},{created},{created},2026-03-04 00:00:00,{currency},{gross},{fee},{net},"
        f"{category},{source},{description},pat@example.org,po_1,cus_1,ch_x,{pi}"
    )


def report(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC)


def payment(pi: str, cents: int, when: datetime, ref: str = "CHG-1") -> LedgerTransaction:
    return LedgerTransaction("payment", pi, None, cents, when, ref)


def refund(re_id: str, pi: str, cents: int, when: datetime, ref: str = "RF-1") -> LedgerTransaction:
    return LedgerTransaction("refund", re_id, pi, cents, when, ref)


def chargeback(
    dp: str, pi: str, cents: int, when: datetime, ref: str = "CB-1"
) -> LedgerTransaction:
    return LedgerTransaction("chargeback", dp, pi, cents, when, ref)


# A payout's worth of activity with one line of every kind, and the ledger it is checked against.
FULL_REPORT = report(
    row("txn_1", "2026-03-02 09:00:00", "600.00", "17.70", "582.30", "charge", "ch_1", "pi_1"),
    row("txn_2", "2026-03-02 10:00:00", "450.00", "13.35", "436.65", "charge", "ch_2", "pi_2"),
    row("txn_3", "2026-03-02 11:00:00", "300.00", "9.00", "291.00", "charge", "ch_3", "pi_3"),
    row("txn_4", "2026-03-02 12:00:00", "-100.00", "0.00", "-100.00", "refund", "re_1", "pi_1"),
    row("txn_5", "2026-03-02 13:00:00", "-600.00", "15.00", "-615.00", "dispute", "dp_1", "pi_1"),
    row("txn_1", "2026-03-02 09:00:00", "600.00", "17.70", "582.30", "charge", "ch_1", "pi_1"),
    row("txn_6", "2026-03-02 14:00:00", "0.00", "2.00", "-2.00", "fee", "fee_1"),
    row("txn_7", "2026-03-02 18:00:00", "-1000.00", "0.00", "-1000.00", "payout", "po_1"),
)
FULL_LEDGER = [
    payment("pi_1", 60000, at(9), "CHG-1"),
    payment("pi_2", 40000, at(10), "CHG-2"),
    refund("re_1", "pi_1", 10000, at(12), "RF-1"),
    payment("pi_9", 25000, at(15), "CHG-9"),
]


def kinds(text: str, ledger: list[LedgerTransaction]) -> list[str]:
    return [o.kind for o in reconcile(parse_settlement(text), ledger).outcomes]


# --- reading the report ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "cents"),
    [
        ("0.10", 10),
        ("1234.56", 123456),
        ("-600.00", -60000),
        ("0.1", 10),
        ("600", 60000),
        ("-0.01", -1),
    ],
)
def test_amounts_convert_to_exact_integer_cents(written: str, cents: int) -> None:
    [line] = parse_settlement(
        report(row("txn_1", "2026-03-02 09:00:00", written, "0.00", written, "other", "x_1"))
    )
    assert line.gross_cents == cents
    assert line.net_cents == cents


def test_a_line_carries_its_fields_and_ignores_extra_columns() -> None:
    [line] = parse_settlement(
        report(
            row(
                "txn_1",
                "2026-03-02 17:04:11",
                "600.00",
                "17.70",
                "582.30",
                "Charge",
                "ch_1",
                "pi_1",
            )
        )
    )
    assert line == SettlementLine(
        line_number=2,
        balance_transaction_id="txn_1",
        created_utc=datetime(2026, 3, 2, 17, 4, 11, tzinfo=UTC),
        currency="usd",
        gross_cents=60000,
        fee_cents=1770,
        net_cents=58230,
        reporting_category="charge",
        source_id="ch_1",
        payment_intent_id="pi_1",
        automatic_payout_id="po_1",
        available_on_utc=datetime(2026, 3, 4, tzinfo=UTC),
        description=None,
        customer_id="cus_1",
        charge_id="ch_x",
    )


def test_only_the_required_columns_are_needed() -> None:
    text = (
        "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
        "payment_intent_id\n"
        "txn_1,2026-03-02 09:00:00,USD,600.00,17.70,582.30,charge,ch_1,pi_1\n"
    )
    [line] = parse_settlement(text)
    assert (line.automatic_payout_id, line.available_on_utc, line.charge_id) == (None, None, None)
    assert line.currency == "usd"


def test_a_header_only_report_has_no_lines() -> None:
    assert parse_settlement(HEADER + "\n") == []
    assert parse_settlement(HEADER) == []


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    text = "\ufeff" + report(
        row("txn_1", "2026-03-02 09:00:00", "600.00", "17.70", "582.30", "charge", "ch_1", "pi_1")
    )
    [line] = parse_settlement(text)
    assert line.balance_transaction_id == "txn_1"


def test_windows_line_endings_blank_lines_and_quoted_newlines_keep_line_numbers() -> None:
    text = (
        HEADER
        + "\r\n"
        + row(
            "txn_1",
            "2026-03-02 09:00:00",
            "1.00",
            "0.00",
            "1.00",
            "charge",
            "ch_1",
            "pi_1",
            description='"two\r\nlines"',
        )
        + "\r\n\r\n"
        + row("txn_2", "2026-03-02 09:00:00", "2.00", "0.00", "2.00", "charge", "ch_2", "pi_2")
        + "\r\n"
    )
    first, second = parse_settlement(text)
    assert first.description == "two\r\nlines"
    assert (first.line_number, second.line_number) == (2, 5)


@pytest.mark.parametrize(
    "written",
    [
        "2026-03-02 17:04:11",
        "2026-03-02T17:04:11Z",
        "2026-03-02T17:04:11+00:00",
        "2026-03-02T12:04:11-05:00",
    ],
)
def test_created_utc_reads_stripe_and_iso_8601_forms_as_utc(written: str) -> None:
    [line] = parse_settlement(report(row("txn_1", written, "1.00", "0.00", "1.00", "fee", "f_1")))
    assert line.created_utc == datetime(2026, 3, 2, 17, 4, 11, tzinfo=UTC)


def test_bad_input_lists_every_problem_with_its_line_number() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "600.00", "17.70", "582.30", "charge", "ch_1", "pi_1"),
        row("txn_2", "2026-03-02 09:00:00", "6OO.00", "17.70", "582.30", "charge", "ch_2", "pi_2"),
        row("txn_3", "02/03/2026 09:00", "1.00", "0.00", "1.00", "charge", "ch_3", "pi_3"),
        row(
            "txn_4", "2026-03-02 09:00:00", "1.00", "0.00", "1.00", "charge", "ch_4", "pi_4", "eur"
        ),
        row("txn_5", "2026-03-02 09:00:00", "1.005", "0.00", "1.005", "charge", "ch_5", "pi_5"),
        "txn_6,2026-03-02 09:00:00,usd",
        row("txn_7", "2026-03-02 09:00:00", "10.00", "1.00", "8.00", "charge", "ch_7", "pi_7"),
        row("txn_8", "2026-03-02 09:00:00", "10.00", "0.00", "10.00", "refund", "re_8", "pi_8"),
        row("", "2026-02-30 09:00:00", "1.00", "0.00", "1.00", "charge", "", "pi_9"),
    )
    with pytest.raises(SettlementFormatError) as refused:
        parse_settlement(text)
    problems = refused.value.problems
    assert not any(p.startswith("line 2:") for p in problems)
    expected = [
        ("line 3:", "gross '6OO.00' is not an amount"),
        ("line 4:", "created_utc '02/03/2026 09:00'"),
        ("line 5:", "currency is 'eur'"),
        ("line 6:", "gross '1.005' has more than 2 decimal places"),
        ("line 6:", "net '1.005' has more than 2 decimal places"),
        ("line 7:", "3 fields where the header has 16"),
        ("line 8:", "net 8.00 is not gross 10.00 minus fee 1.00"),
        ("line 9:", "a refund must have a negative gross"),
        ("line 10:", "balance_transaction_id is empty"),
        ("line 10:", "'2026-02-30 09:00:00' is not a valid date"),
        ("line 10:", "source_id is empty on a charge line"),
    ]
    for prefix, text_part in expected:
        assert any(p.startswith(prefix) and text_part in p for p in problems), (prefix, text_part)
    assert len(problems) == len(expected)
    assert "line 3:" in str(refused.value)


def test_missing_required_columns_are_named() -> None:
    with pytest.raises(SettlementFormatError) as refused:
        parse_settlement("balance_transaction_id,created_utc,currency,gross,source_id\n")
    assert refused.value.problems == [
        "line 1: missing required column(s): fee, net, reporting_category, payment_intent_id"
    ]


@pytest.mark.parametrize("text", ["", "\ufeff", "\n\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    with pytest.raises(SettlementFormatError) as refused:
        parse_settlement(text)
    assert refused.value.problems[0].startswith("line 1: no header row")


def test_a_report_over_the_line_limit_is_refused() -> None:
    line = row("txn_1", "2026-03-02 09:00:00", "1.00", "0.00", "1.00", "fee", "f_1")
    with pytest.raises(SettlementFormatError) as refused:
        parse_settlement(report(*[line] * (MAX_SETTLEMENT_LINES + 1)))
    assert refused.value.problems == [
        f"line {MAX_SETTLEMENT_LINES + 2}: the report has more than {MAX_SETTLEMENT_LINES} lines;"
        " split it by payout or by period"
    ]


# --- the ledger's side -----------------------------------------------------------------------


def test_a_ledger_transaction_needs_an_aware_time_and_a_positive_magnitude() -> None:
    with pytest.raises(ValueError, match="aware"):
        payment("pi_1", 100, datetime(2026, 3, 2, 9))
    with pytest.raises(ValueError, match="magnitude"):
        payment("pi_1", -100, at(9))
    with pytest.raises(ValueError, match="kind"):
        # Typed as Any because the point is a value the type checker would have refused.
        stored_kind: Any = "payout"
        LedgerTransaction(stored_kind, "po_1", None, 100, at(9), "x")


# --- reconciling -----------------------------------------------------------------------------


def test_a_full_report_yields_every_outcome_kind_once_per_line_and_unsettled_transaction() -> None:
    result = reconcile(parse_settlement(FULL_REPORT), FULL_LEDGER)
    assert [(o.kind, o.line_number) for o in result.outcomes] == [
        ("matched", 2),
        ("amount_mismatch", 3),
        ("missing_in_ledger", 4),
        ("refund", 5),
        ("chargeback", 6),
        ("duplicate_in_settlement", 7),
        ("ignored", 8),
        ("ignored", 9),
        ("missing_in_settlement", None),
    ]
    assert set(OUTCOME_KINDS) == {o.kind for o in result.outcomes}
    assert result.summary.counts == {
        "matched": 1,
        "refund": 1,
        "chargeback": 1,
        "missing_in_ledger": 1,
        "amount_mismatch": 1,
        "duplicate_in_settlement": 1,
        "missing_in_settlement": 1,
        "ignored": 2,
    }
    assert not result.is_clean


def test_the_summary_totals_the_report_apart_from_payouts() -> None:
    summary = reconcile(parse_settlement(FULL_REPORT), FULL_LEDGER).summary
    # Charges 600 + 450 + 300 + duplicated 600, refund -100, dispute -600, fee line 0.
    assert summary.gross_cents == 60000 + 45000 + 30000 + 60000 - 10000 - 60000
    assert summary.fee_cents == 1770 + 1335 + 900 + 0 + 1500 + 1770 + 200
    assert summary.net_cents == summary.gross_cents - summary.fee_cents
    assert summary.payout_cents == -100000


def test_a_charge_with_the_ledger_amount_is_matched_with_our_reference() -> None:
    [outcome] = reconcile(
        parse_settlement(
            report(
                row(
                    "txn_1",
                    "2026-03-02 09:00:00",
                    "600.00",
                    "17.70",
                    "582.30",
                    "charge",
                    "ch_1",
                    "pi_1",
                )
            )
        ),
        [payment("pi_1", 60000, at(9), "CHG-1")],
    ).outcomes
    assert outcome.kind == "matched"
    assert (outcome.balance_transaction_id, outcome.source_id, outcome.payment_intent_id) == (
        "txn_1",
        "ch_1",
        "pi_1",
    )
    assert (outcome.settlement_cents, outcome.ledger_cents, outcome.difference_cents) == (
        60000,
        60000,
        0,
    )
    assert outcome.reference == "CHG-1"


def test_a_charge_without_a_payment_intent_is_found_by_its_source_id() -> None:
    text = report(row("txn_1", "2026-03-02 09:00:00", "5.00", "0.00", "5.00", "charge", "py_1"))
    assert kinds(text, [payment("py_1", 500, at(9))]) == ["matched"]


def test_an_amount_mismatch_reports_both_amounts_and_the_difference() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "450.00", "13.35", "436.65", "charge", "ch_1", "pi_1"),
        row("txn_2", "2026-03-02 10:00:00", "-100.00", "0.00", "-100.00", "refund", "re_1", "pi_1"),
    )
    charge, refunded = reconcile(
        parse_settlement(text),
        [payment("pi_1", 40000, at(9)), refund("re_1", "pi_1", 9000, at(10))],
    ).outcomes
    assert charge.kind == "amount_mismatch"
    assert (charge.settlement_cents, charge.ledger_cents, charge.difference_cents) == (
        45000,
        40000,
        5000,
    )
    assert charge.detail == "settled 450.00 but our ledger has 400.00 (+50.00)"
    assert refunded.kind == "amount_mismatch"
    assert (refunded.settlement_cents, refunded.ledger_cents, refunded.difference_cents) == (
        -10000,
        -9000,
        -1000,
    )
    assert refunded.detail == "refunded 100.00 but our ledger has 90.00 (+10.00)"


def test_a_refund_line_matches_the_ledger_refund_by_its_refund_id() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "-600.00", "0.00", "-600.00", "refund", "re_1", "pi_1")
    )
    [outcome] = reconcile(
        parse_settlement(text), [refund("re_1", "pi_1", 60000, at(9), "RF-7")]
    ).outcomes
    assert outcome.kind == "refund"
    assert (outcome.settlement_cents, outcome.ledger_cents, outcome.reference) == (
        -60000,
        -60000,
        "RF-7",
    )


def test_charges_and_refunds_we_have_no_transaction_for_are_missing_in_ledger() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "600.00", "0.00", "600.00", "charge", "ch_1", "pi_1"),
        row("txn_2", "2026-03-02 09:00:00", "-60.00", "0.00", "-60.00", "refund", "re_1", "pi_1"),
    )
    # The ledger refund is for another refund id, so it does not cover the line.
    result = reconcile(parse_settlement(text), [refund("re_2", "pi_1", 6000, at(9))])
    assert [o.kind for o in result.outcomes] == [
        "missing_in_ledger",
        "missing_in_ledger",
        "missing_in_settlement",
    ]
    assert result.outcomes[0].ledger_cents is None
    assert "pi_1 is not in our ledger" in result.outcomes[0].detail


def test_a_dispute_is_a_chargeback_noting_whether_the_ledger_knows_it() -> None:
    text = report(
        row(
            "txn_1", "2026-03-02 09:00:00", "-600.00", "15.00", "-615.00", "dispute", "dp_1", "pi_1"
        ),
        row(
            "txn_2", "2026-03-02 09:00:00", "-300.00", "15.00", "-315.00", "dispute", "dp_2", "pi_2"
        ),
        row(
            "txn_3", "2026-03-02 09:00:00", "-90.00", "15.00", "-105.00", "dispute", "dp_3", "pi_3"
        ),
        row(
            "txn_4",
            "2026-03-02 10:00:00",
            "600.00",
            "0.00",
            "600.00",
            "dispute_reversal",
            "dp_1",
            "pi_1",
        ),
    )
    ledger = [
        chargeback("dp_1", "pi_1", 60000, at(9), "CB-1"),
        # Recorded before the processor's dispute id was known: found by the disputed payment.
        chargeback("dp_pending", "pi_2", 30000, at(9), "CB-2"),
        payment("pi_3", 9000, at(8), "CHG-3"),
    ]
    by_id, by_payment, unknown, reversal = reconcile(
        parse_settlement(text), ledger, (at(9), at(10))
    ).outcomes
    assert {o.kind for o in (by_id, by_payment, unknown, reversal)} == {"chargeback"}
    assert (by_id.known_in_ledger, by_id.reference, by_id.ledger_cents) == (True, "CB-1", -60000)
    assert (by_payment.known_in_ledger, by_payment.reference) == (True, "CB-2")
    assert (unknown.known_in_ledger, unknown.reference, unknown.ledger_cents) == (
        False,
        "CHG-3",
        None,
    )
    assert "not yet in our ledger" in unknown.detail
    assert reversal.known_in_ledger is True
    assert reversal.reporting_category == "dispute_reversal"
    assert "reversed" in reversal.detail


def test_fee_payout_and_other_lines_are_ignored() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "0.00", "2.00", "-2.00", "fee", "fee_1"),
        row("txn_2", "2026-03-02 09:00:00", "-10.00", "0.00", "-10.00", "payout", "po_1"),
        row("txn_3", "2026-03-02 09:00:00", "5.00", "0.00", "5.00", "transfer", "tr_1"),
        row("txn_4", "2026-03-02 09:00:00", "-5.00", "0.00", "-5.00", "refund_failure", "re_1"),
    )
    result = reconcile(parse_settlement(text), [])
    assert [o.kind for o in result.outcomes] == ["ignored"] * 4
    assert "'transfer' is not reconciled" in result.outcomes[2].detail
    assert result.is_clean


def test_a_second_line_for_one_transaction_is_a_duplicate_in_settlement() -> None:
    charge = row("txn_1", "2026-03-02 09:00:00", "6.00", "0.00", "6.00", "charge", "ch_1", "pi_1")
    text = report(
        charge,
        charge,
        # Another balance transaction for the same charge.
        row("txn_2", "2026-03-02 09:00:00", "6.00", "0.00", "6.00", "charge", "ch_1", "pi_1"),
        # Another charge on a payment that has already been settled.
        row("txn_3", "2026-03-02 09:00:00", "6.00", "0.00", "6.00", "charge", "ch_2", "pi_1"),
        row("txn_4", "2026-03-02 09:00:00", "-6.00", "0.00", "-6.00", "refund", "re_1", "pi_1"),
        row("txn_5", "2026-03-02 09:00:00", "-6.00", "0.00", "-6.00", "refund", "re_1", "pi_1"),
    )
    result = reconcile(
        parse_settlement(text), [payment("pi_1", 600, at(9)), refund("re_1", "pi_1", 600, at(9))]
    )
    assert [o.kind for o in result.outcomes] == [
        "matched",
        "duplicate_in_settlement",
        "duplicate_in_settlement",
        "duplicate_in_settlement",
        "refund",
        "duplicate_in_settlement",
    ]
    assert "line 2" in result.outcomes[1].detail
    assert "already settled on line 2" in result.outcomes[3].detail


def test_two_ledger_payments_on_one_id_need_two_lines() -> None:
    text = report(
        row("txn_1", "2026-03-02 09:00:00", "6.00", "0.00", "6.00", "charge", "ch_1", "pi_1"),
        row("txn_2", "2026-03-02 10:00:00", "6.00", "0.00", "6.00", "charge", "ch_2", "pi_1"),
    )
    ledger = [payment("pi_1", 600, at(9)), payment("pi_1", 600, at(10))]
    assert kinds(text, ledger) == ["matched", "matched"]


# --- the window for missing_in_settlement ----------------------------------------------------


WINDOW_REPORT = report(
    row("txn_1", "2026-03-02 09:00:00", "6.00", "0.00", "6.00", "charge", "ch_1", "pi_1"),
    row("txn_2", "2026-03-02 17:00:00", "7.00", "0.00", "7.00", "charge", "ch_2", "pi_2"),
)


def test_unsettled_ledger_payments_and_refunds_inside_the_window_are_missing_in_settlement() -> (
    None
):
    ledger = [
        payment("pi_1", 600, at(9)),
        payment("pi_2", 700, at(17)),
        payment("pi_3", 800, at(9), "CHG-3"),  # on the earliest line's second: inclusive
        refund("re_1", "pi_1", 100, at(17), "RF-1"),  # on the latest line's second: inclusive
        chargeback("dp_1", "pi_1", 600, at(12)),  # chargebacks are not expected as lines
    ]
    result = reconcile(parse_settlement(WINDOW_REPORT), ledger)
    assert result.window == (at(9), at(17))
    missing = result.of_kind("missing_in_settlement")
    assert [(o.source_id, o.payment_intent_id, o.ledger_cents, o.reference) for o in missing] == [
        ("pi_3", "pi_3", 800, "CHG-3"),
        ("re_1", "pi_1", -100, "RF-1"),
    ]
    assert all(o.line_number is None and o.settlement_cents is None for o in missing)


def test_a_ledger_payment_just_outside_the_default_window_is_not_reported() -> None:
    ledger = [
        payment("pi_1", 600, at(9)),
        payment("pi_2", 700, at(17)),
        payment("pi_early", 800, at(8, 59, 59)),
        payment("pi_late", 800, at(17, 0, 1)),
    ]
    result = reconcile(parse_settlement(WINDOW_REPORT), ledger)
    assert result.of_kind("missing_in_settlement") == ()
    assert result.is_clean


def test_an_explicit_window_replaces_the_reports_period() -> None:
    ledger = [payment("pi_1", 600, at(9)), payment("pi_2", 700, at(17)), payment("pi_x", 1, at(20))]
    day = (at(0), at(0) + timedelta(days=1) - timedelta(microseconds=1))
    result = reconcile(parse_settlement(WINDOW_REPORT), ledger, day)
    assert [o.source_id for o in result.of_kind("missing_in_settlement")] == ["pi_x"]


def test_a_header_only_report_checks_the_ledger_only_within_an_explicit_window() -> None:
    ledger = [payment("pi_1", 600, at(9))]
    assert reconcile([], ledger).outcomes == ()
    assert reconcile([], ledger).window is None
    assert kinds(HEADER, ledger) == []
    assert [o.kind for o in reconcile([], ledger, (at(0), at(23))).outcomes] == [
        "missing_in_settlement"
    ]


def test_a_window_must_be_aware_and_in_order() -> None:
    with pytest.raises(ValueError, match="aware"):
        reconcile([], [], (datetime(2026, 3, 2), datetime(2026, 3, 3)))
    with pytest.raises(ValueError, match="starts after"):
        reconcile([], [], (at(10), at(9)))

"""Settlement reconciliation: the card processor's settlement report against our ledger.

Billing staff upload the processor's report as CSV. It is modelled on Stripe's itemized
"Payout reconciliation" report and uses Stripe's column names; the first row is the header.

Required columns: `balance_transaction_id, created_utc, currency, gross, fee, net,
reporting_category, source_id, payment_intent_id`.
Optional columns: `automatic_payout_id, available_on_utc, description, customer_id, charge_id`.
Any other column is ignored, so a report with every Stripe column can be uploaded as is.

- Amounts are decimal currency units as Stripe writes them ("600.00", "-100.00", "0.1") and are
  converted to integer cents exactly; more than two decimal places is refused. `net` must be
  `gross - fee`, as it always is in Stripe's reports.
- `created_utc` is "2026-03-02 17:04:11" (UTC); ISO 8601 ("2026-03-02T17:04:11Z", with an
  offset) is accepted too. `available_on_utc` takes the same forms or a plain date.
- `currency` must be usd: the clinic settles in dollars only.
- `reporting_category` is Stripe's: `charge` (gross positive), `refund` (gross negative),
  `dispute`, `dispute_reversal`, `fee`, `payout`. Any other category (`transfer`,
  `other_adjustment`, ...) is "other". Charge, refund and dispute lines need a `source_id`
  (`ch_`/`py_`, `re_`, `dp_`).
- A UTF-8 byte order mark is tolerated, blank lines are skipped, a header-only file has no lines,
  and a report may hold at most 50,000 lines.

`parse_settlement` reads the text and reports every problem at once with its line number
(`SettlementFormatError.problems`), so staff can fix the file in one pass. `reconcile` then
gives one outcome per settlement line and one per ledger transaction that no line settled:

- `matched`: a charge line whose `payment_intent_id` (or else `source_id`) is a ledger payment
  of the same amount;
- `refund`: a refund line whose `source_id` (`re_...`) is a ledger refund of the same magnitude;
- `chargeback`: a dispute or dispute reversal line, noting whether our ledger already has the
  chargeback (by dispute id, or by the disputed payment);
- `missing_in_ledger`: a charge or refund line for which we have no transaction;
- `amount_mismatch`: the transaction was found but the amounts differ;
- `duplicate_in_settlement`: a second line for a transaction already settled by an earlier line
  (the same balance transaction, charge or refund id, or a second charge on one payment);
- `missing_in_settlement`: a ledger payment or refund that no line settled, whose `occurred_at`
  falls inside the window (inclusive; by default the earliest to the latest `created_utc` of the
  report, so activity outside the report's period is not flagged);
- `ignored`: fee, payout and other lines, which do not correspond to a ledger transaction.

Amounts in outcomes are in the report's sign convention: money into our processor balance is
positive, so a refund or a chargeback is negative on both the settlement and the ledger side.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

REQUIRED_COLUMNS: tuple[str, ...] = (
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "payment_intent_id",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "automatic_payout_id",
    "available_on_utc",
    "description",
    "customer_id",
    "charge_id",
)
MAX_SETTLEMENT_LINES = 50_000
SETTLEMENT_CURRENCY = "usd"

Category = Literal["charge", "refund", "dispute", "dispute_reversal", "fee", "payout", "other"]
_CATEGORIES: dict[str, Category] = {
    "charge": "charge",
    "refund": "refund",
    "dispute": "dispute",
    "dispute_reversal": "dispute_reversal",
    "fee": "fee",
    "payout": "payout",
}

LedgerKind = Literal["payment", "refund", "chargeback"]
LEDGER_KINDS: tuple[LedgerKind, ...] = ("payment", "refund", "chargeback")

OutcomeKind = Literal[
    "matched",
    "refund",
    "chargeback",
    "missing_in_ledger",
    "amount_mismatch",
    "duplicate_in_settlement",
    "missing_in_settlement",
    "ignored",
]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = (
    "matched",
    "refund",
    "chargeback",
    "missing_in_ledger",
    "amount_mismatch",
    "duplicate_in_settlement",
    "missing_in_settlement",
    "ignored",
)
# A chargeback needs attention only while the ledger lacks it, so it is not in this set.
_SETTLED_KINDS: frozenset[OutcomeKind] = frozenset({"matched", "refund", "ignored"})


class SettlementFormatError(ValueError):
    """The report cannot be read; `problems` lists each one, prefixed with its line number."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the settlement report was refused:\n" + "\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class SettlementLine:
    """One balance transaction of the report, with amounts in signed integer cents."""

    line_number: int
    balance_transaction_id: str
    created_utc: datetime
    currency: str
    gross_cents: int
    fee_cents: int
    net_cents: int
    reporting_category: str
    """As written (lower-cased); see `category` for how it is treated."""
    source_id: str
    payment_intent_id: str | None
    automatic_payout_id: str | None = None
    available_on_utc: datetime | None = None
    description: str | None = None
    customer_id: str | None = None
    charge_id: str | None = None

    @property
    def category(self) -> Category:
        return _CATEGORIES.get(self.reporting_category, "other")


@dataclass(frozen=True)
class LedgerTransaction:
    """A processor transaction our ledger has recorded.

    `processor_id` is a payment's PaymentIntent id (`pi_...`), a refund's id (`re_...`) or a
    dispute's id (`dp_...`); `payment_id` is, for a refund or a chargeback, the PaymentIntent it
    belongs to. `amount_cents` is a positive magnitude whatever the direction of the money.
    """

    kind: LedgerKind
    processor_id: str
    payment_id: str | None
    amount_cents: int
    occurred_at: datetime
    reference: str

    def __post_init__(self) -> None:
        # Checked at runtime because the ledger is read from storage, where Literal means nothing.
        if self.kind not in LEDGER_KINDS:
            raise ValueError(f"unknown ledger transaction kind {self.kind!r}")
        if self.amount_cents < 0:
            raise ValueError(f"amount_cents is a magnitude, got {self.amount_cents}")
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be an aware datetime")

    @property
    def signed_cents(self) -> int:
        """The amount in the settlement report's sign convention (money in is positive)."""
        return self.amount_cents if self.kind == "payment" else -self.amount_cents


@dataclass(frozen=True)
class ReconciliationOutcome:
    kind: OutcomeKind
    line_number: int | None
    """The report line, or None for a ledger transaction missing from the report."""
    balance_transaction_id: str | None
    reporting_category: str | None
    source_id: str | None
    """The line's source id, or the ledger transaction's processor id."""
    payment_intent_id: str | None
    settlement_cents: int | None
    ledger_cents: int | None
    reference: str | None
    """Our own id for the transaction (charge id, refund id), when the ledger has it."""
    detail: str
    known_in_ledger: bool | None = None
    """Chargebacks only: whether our ledger already records this chargeback."""

    @property
    def difference_cents(self) -> int | None:
        """Settlement minus ledger, when both sides are known."""
        if self.settlement_cents is None or self.ledger_cents is None:
            return None
        return self.settlement_cents - self.ledger_cents


@dataclass(frozen=True)
class ReconciliationSummary:
    counts: dict[OutcomeKind, int]
    """Every outcome kind, with zero for kinds that did not occur."""
    gross_cents: int
    """Totals as the report states them, over every line but payouts."""
    fee_cents: int
    net_cents: int
    payout_cents: int
    """The net of the payout lines: money sent to the bank, negative in Stripe's reports."""


@dataclass(frozen=True)
class ReconciliationResult:
    outcomes: tuple[ReconciliationOutcome, ...]
    summary: ReconciliationSummary
    window: tuple[datetime, datetime] | None
    """The period checked for missing_in_settlement; None when there was nothing to check."""

    def of_kind(self, kind: OutcomeKind) -> tuple[ReconciliationOutcome, ...]:
        return tuple(o for o in self.outcomes if o.kind == kind)

    @property
    def is_clean(self) -> bool:
        """True when nothing needs a person: every line settled and every chargeback known."""
        return all(
            o.kind in _SETTLED_KINDS or (o.kind == "chargeback" and o.known_in_ledger)
            for o in self.outcomes
        )


# ---------------------------------------------------------------------------------------------
# Parsing

_AMOUNT = re.compile(r"(-?)(\d+)(?:\.(\d+))?")
# Twelve integer digits keep every amount well inside Decimal's default 28-digit precision, so
# the conversion to cents can never round.
_MAX_INTEGER_DIGITS = 12
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NEEDS_SOURCE_ID: frozenset[Category] = frozenset(
    {"charge", "refund", "dispute", "dispute_reversal"}
)


def _cents(column: str, raw: str) -> tuple[int | None, str | None]:
    text = raw.strip()
    found = _AMOUNT.fullmatch(text)
    if found is None:
        return None, f"{column} {raw!r} is not an amount like 600.00 or -100.00"
    if len(found.group(2).lstrip("0")) > _MAX_INTEGER_DIGITS:
        return None, f"{column} {raw!r} is too large"
    if found.group(3) is not None and len(found.group(3)) > 2:
        return None, f"{column} {raw!r} has more than 2 decimal places"
    return int(Decimal(text) * 100), None


def _timestamp(
    column: str, raw: str, *, date_only_ok: bool = False
) -> tuple[datetime | None, str | None]:
    text = raw.strip()
    if not text:
        return None, f"{column} is empty"
    if date_only_ok and _DATE.fullmatch(text):
        text += " 00:00:00"
    if _TIMESTAMP.fullmatch(text) is None:
        return None, f"{column} {raw!r} is not a time like 2026-03-02 17:04:11"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, f"{column} {raw!r} is not a valid date and time"
    # Stripe's created_utc carries no offset because it is UTC by definition.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC), None
    return parsed.astimezone(UTC), None


def _parse_row(
    line_number: int, row: list[str], index: dict[str, int]
) -> tuple[SettlementLine | None, list[str]]:
    def value(column: str) -> str:
        position = index.get(column)
        return row[position].strip() if position is not None else ""

    problems: list[str] = []

    def check(found: tuple[object, str | None]) -> None:
        if found[1] is not None:
            problems.append(found[1])

    balance_transaction_id = value("balance_transaction_id")
    if not balance_transaction_id:
        problems.append("balance_transaction_id is empty")
    created = _timestamp("created_utc", value("created_utc"))
    check(created)
    available: tuple[datetime | None, str | None] = (None, None)
    if value("available_on_utc"):
        available = _timestamp("available_on_utc", value("available_on_utc"), date_only_ok=True)
        check(available)
    currency = value("currency").lower()
    if currency != SETTLEMENT_CURRENCY:
        shown = repr(value("currency")) if currency else "empty"
        problems.append(f"currency is {shown}; only {SETTLEMENT_CURRENCY} is settled")
    gross, fee, net = (_cents(c, value(c)) for c in ("gross", "fee", "net"))
    for amount in (gross, fee, net):
        check(amount)
    reporting_category = value("reporting_category").lower()
    category = _CATEGORIES.get(reporting_category, "other")
    if not reporting_category:
        problems.append("reporting_category is empty")
    source_id = value("source_id")
    payment_intent_id = value("payment_intent_id") or None
    if category in _NEEDS_SOURCE_ID and not source_id:
        problems.append(f"source_id is empty on a {category} line")
    if gross[0] is not None and fee[0] is not None and net[0] is not None:
        if gross[0] - fee[0] != net[0]:
            problems.append(
                f"net {_money(net[0])} is not gross {_money(gross[0])} minus fee {_money(fee[0])}"
            )
        if category == "charge" and gross[0] <= 0:
            problems.append(f"a charge must have a positive gross, not {_money(gross[0])}")
        if category == "refund" and gross[0] >= 0:
            problems.append(f"a refund must have a negative gross, not {_money(gross[0])}")

    if problems:
        return None, [f"line {line_number}: {p}" for p in problems]
    # The checks above guarantee these; asserting them narrows the types for the constructor.
    assert created[0] is not None and gross[0] is not None
    assert fee[0] is not None and net[0] is not None
    return (
        SettlementLine(
            line_number=line_number,
            balance_transaction_id=balance_transaction_id,
            created_utc=created[0],
            currency=currency,
            gross_cents=gross[0],
            fee_cents=fee[0],
            net_cents=net[0],
            reporting_category=reporting_category,
            source_id=source_id,
            payment_intent_id=payment_intent_id,
            automatic_payout_id=value("automatic_payout_id") or None,
            available_on_utc=available[0],
            description=value("description") or None,
            customer_id=value("customer_id") or None,
            charge_id=value("charge_id") or None,
        ),
        [],
    )


def parse_settlement(text: str) -> list[SettlementLine]:
    """Read a settlement report; raises `SettlementFormatError` listing every problem found."""
    text = text.removeprefix("\ufeff")
    # newline="" hands line endings to the csv module, which keeps newlines inside quoted fields.
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = iter(reader)
    expected = ", ".join(REQUIRED_COLUMNS)
    try:
        header = next(rows, None)
    except csv.Error as error:
        raise SettlementFormatError([f"line 1: {error}"]) from error
    if header is None or not any(cell.strip() for cell in header):
        raise SettlementFormatError([f"line 1: no header row; expected the columns {expected}"])

    columns = [cell.strip().lower() for cell in header]
    header_problems = [
        f"line 1: column {name} appears more than once"
        for name in dict.fromkeys(columns)
        if name and columns.count(name) > 1
    ]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        header_problems.append(f"line 1: missing required column(s): {', '.join(missing)}")
    if header_problems:
        raise SettlementFormatError(header_problems)
    index = {name: position for position, name in enumerate(columns)}

    lines: list[SettlementLine] = []
    problems: list[str] = []
    count = 0
    while True:
        # A quoted field may span several physical lines; a record is numbered by its first one.
        line_number = reader.line_num + 1
        try:
            row = next(rows, None)
        except csv.Error as error:
            # The reader cannot resynchronise reliably after a broken record, so stop here.
            problems.append(f"line {line_number}: {error}")
            break
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        count += 1
        if count > MAX_SETTLEMENT_LINES:
            raise SettlementFormatError(
                [
                    f"line {line_number}: the report has more than {MAX_SETTLEMENT_LINES} lines;"
                    " split it by payout or by period"
                ]
            )
        if len(row) != len(columns):
            problems.append(
                f"line {line_number}: {len(row)} fields where the header has {len(columns)}"
            )
            continue
        line, row_problems = _parse_row(line_number, row, index)
        problems.extend(row_problems)
        if line is not None:
            lines.append(line)
    if problems:
        raise SettlementFormatError(problems)
    return lines


# ---------------------------------------------------------------------------------------------
# Reconciliation


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


@dataclass
class _Ledger:
    """The ledger indexed by processor id; each transaction can be settled by one line only."""

    transactions: list[LedgerTransaction]
    payments: dict[str, list[int]] = field(default_factory=dict)
    refunds: dict[str, list[int]] = field(default_factory=dict)
    chargebacks: dict[str, list[int]] = field(default_factory=dict)
    chargebacks_by_payment: dict[str, list[int]] = field(default_factory=dict)
    settled_by: dict[int, int] = field(default_factory=dict)
    """Ledger position -> the report line that settled it."""

    def __post_init__(self) -> None:
        by_kind = {"payment": self.payments, "refund": self.refunds, "chargeback": self.chargebacks}
        for position, txn in enumerate(self.transactions):
            by_kind[txn.kind].setdefault(txn.processor_id, []).append(position)
            if txn.kind == "chargeback" and txn.payment_id:
                self.chargebacks_by_payment.setdefault(txn.payment_id, []).append(position)

    def settle(
        self, table: dict[str, list[int]], keys: Sequence[str], line_number: int
    ) -> tuple[LedgerTransaction | None, int | None]:
        """The first unsettled transaction under one of `keys`, now settled by the line.

        Without one, the line that already settled a transaction under those keys, if any:
        the line is then a duplicate rather than unknown to the ledger.
        """
        for key in keys:
            for position in table.get(key, ()):
                if position not in self.settled_by:
                    self.settled_by[position] = line_number
                    return self.transactions[position], None
        for key in keys:
            for position in table.get(key, ()):
                return None, self.settled_by[position]
        return None, None

    def first(self, table: dict[str, list[int]], key: str | None) -> LedgerTransaction | None:
        positions = table.get(key, ()) if key else ()
        return self.transactions[positions[0]] if positions else None


def _outcome(
    kind: OutcomeKind,
    line: SettlementLine,
    detail: str,
    txn: LedgerTransaction | None = None,
    *,
    known_in_ledger: bool | None = None,
    reference: str | None = None,
) -> ReconciliationOutcome:
    return ReconciliationOutcome(
        kind=kind,
        line_number=line.line_number,
        balance_transaction_id=line.balance_transaction_id,
        reporting_category=line.reporting_category,
        source_id=line.source_id or None,
        payment_intent_id=line.payment_intent_id,
        settlement_cents=line.gross_cents,
        ledger_cents=txn.signed_cents if txn is not None else None,
        reference=txn.reference if txn is not None else reference,
        detail=detail,
        known_in_ledger=known_in_ledger,
    )


def _compare(
    line: SettlementLine, txn: LedgerTransaction, agreed: OutcomeKind, what: str
) -> ReconciliationOutcome:
    if abs(line.gross_cents) == txn.amount_cents:
        return _outcome(agreed, line, f"{what} {_money(abs(line.gross_cents))} as recorded", txn)
    difference = abs(line.gross_cents) - txn.amount_cents
    return _outcome(
        "amount_mismatch",
        line,
        f"{what} {_money(abs(line.gross_cents))} but our ledger has {_money(txn.amount_cents)}"
        f" ({'+' if difference > 0 else ''}{_money(difference)})",
        txn,
    )


def _charge(line: SettlementLine, ledger: _Ledger) -> ReconciliationOutcome:
    keys = [k for k in (line.payment_intent_id, line.source_id) if k]
    txn, earlier = ledger.settle(ledger.payments, keys, line.line_number)
    if txn is not None:
        return _compare(line, txn, "matched", "settled")
    if earlier is not None:
        return _outcome(
            "duplicate_in_settlement",
            line,
            f"a second charge for payment {keys[0]}, already settled on line {earlier}",
        )
    return _outcome(
        "missing_in_ledger",
        line,
        f"charge {_money(line.gross_cents)} for {keys[0]} is not in our ledger",
    )


def _refund(line: SettlementLine, ledger: _Ledger) -> ReconciliationOutcome:
    txn, earlier = ledger.settle(ledger.refunds, [line.source_id], line.line_number)
    if txn is not None:
        return _compare(line, txn, "refund", "refunded")
    if earlier is not None:
        return _outcome(
            "duplicate_in_settlement",
            line,
            f"refund {line.source_id} was already settled on line {earlier}",
        )
    of_payment = f" of payment {line.payment_intent_id}" if line.payment_intent_id else ""
    return _outcome(
        "missing_in_ledger",
        line,
        f"refund {line.source_id}{of_payment} ({_money(line.gross_cents)}) is not in our ledger",
    )


def _dispute(line: SettlementLine, ledger: _Ledger) -> ReconciliationOutcome:
    # A chargeback recorded before the processor assigned the dispute id is found by payment.
    known = ledger.first(ledger.chargebacks, line.source_id) or ledger.first(
        ledger.chargebacks_by_payment, line.payment_intent_id
    )
    reversal = line.category == "dispute_reversal"
    what = "dispute reversed, funds returned" if reversal else "dispute, funds withdrawn"
    amount = f"{what}: {_money(line.gross_cents)}"
    if known is not None:
        detail = f"{amount}; our ledger has chargeback {known.processor_id}"
        if known.amount_cents != abs(line.gross_cents):
            detail += f" for {_money(known.amount_cents)}"
        return _outcome("chargeback", line, detail, known, known_in_ledger=True)
    # Staff need our charge to record the chargeback against, even though the ledger has none.
    payment = ledger.first(ledger.payments, line.payment_intent_id)
    on = f" on payment {line.payment_intent_id}" if line.payment_intent_id else ""
    return _outcome(
        "chargeback",
        line,
        f"{amount}{on}; not yet in our ledger",
        known_in_ledger=False,
        reference=payment.reference if payment is not None else None,
    )


def _ignored(line: SettlementLine) -> ReconciliationOutcome:
    if line.category == "payout":
        detail = f"payout {line.source_id or line.balance_transaction_id} to the bank"
    elif line.category == "fee":
        detail = "processor fee, not a ledger transaction"
    else:
        detail = f"reporting category {line.reporting_category!r} is not reconciled"
    return _outcome("ignored", line, detail)


def _default_window(lines: Sequence[SettlementLine]) -> tuple[datetime, datetime] | None:
    if not lines:
        return None
    times = [line.created_utc for line in lines]
    return min(times), max(times)


def reconcile(
    lines: Sequence[SettlementLine],
    ledger: Iterable[LedgerTransaction],
    window: tuple[datetime, datetime] | None = None,
) -> ReconciliationResult:
    """Match each report line against the ledger; see the module docstring for the outcomes."""
    if window is not None:
        start, end = window
        if start.utcoffset() is None or end.utcoffset() is None:
            raise ValueError("the window must be aware datetimes")
        if start > end:
            raise ValueError("the window starts after it ends")
    else:
        window = _default_window(lines)

    book = _Ledger(list(ledger))
    seen_balance_transactions: dict[str, int] = {}
    seen_sources: dict[tuple[Category, str], int] = {}
    outcomes: list[ReconciliationOutcome] = []
    for line in lines:
        category = line.category
        earlier = seen_balance_transactions.get(line.balance_transaction_id)
        if earlier is None and category in _NEEDS_SOURCE_ID:
            earlier = seen_sources.get((category, line.source_id))
        if earlier is not None:
            outcomes.append(
                _outcome(
                    "duplicate_in_settlement",
                    line,
                    f"{line.balance_transaction_id} ({line.source_id}) repeats line {earlier}",
                )
            )
            continue
        seen_balance_transactions[line.balance_transaction_id] = line.line_number
        if category in _NEEDS_SOURCE_ID:
            seen_sources[(category, line.source_id)] = line.line_number

        if category == "charge":
            outcomes.append(_charge(line, book))
        elif category == "refund":
            outcomes.append(_refund(line, book))
        elif category in ("dispute", "dispute_reversal"):
            outcomes.append(_dispute(line, book))
        else:
            outcomes.append(_ignored(line))

    if window is not None:
        start, end = window
        unsettled = [
            txn
            for position, txn in enumerate(book.transactions)
            if position not in book.settled_by
            and txn.kind in ("payment", "refund")
            and start <= txn.occurred_at <= end
        ]
        unsettled.sort(key=lambda txn: (txn.occurred_at, txn.processor_id))
        outcomes.extend(
            ReconciliationOutcome(
                kind="missing_in_settlement",
                line_number=None,
                balance_transaction_id=None,
                reporting_category=None,
                source_id=txn.processor_id,
                payment_intent_id=txn.payment_id if txn.kind == "refund" else txn.processor_id,
                settlement_cents=None,
                ledger_cents=txn.signed_cents,
                reference=txn.reference,
                detail=(
                    f"our {txn.kind} {txn.processor_id} of {_money(txn.amount_cents)} at "
                    f"{txn.occurred_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} is not in the report"
                ),
            )
            for txn in unsettled
        )

    counts: dict[OutcomeKind, int] = dict.fromkeys(OUTCOME_KINDS, 0)
    for outcome in outcomes:
        counts[outcome.kind] += 1
    activity = [line for line in lines if line.category != "payout"]
    summary = ReconciliationSummary(
        counts=counts,
        gross_cents=sum(line.gross_cents for line in activity),
        fee_cents=sum(line.fee_cents for line in activity),
        net_cents=sum(line.net_cents for line in activity),
        payout_cents=sum(line.net_cents for line in lines if line.category == "payout"),
    )
    return ReconciliationResult(outcomes=tuple(outcomes), summary=summary, window=window)

"""The card sandbox: a stand-in processor for the one-machine default and the tests.

It behaves like a processor where it matters to us: it keeps its own records (a SQLite file of
its own, outside billing's database, so a billing crash does not make it forget), answers a
repeated idempotency key with its first answer instead of charging again, and declines the test
cards the way a real processor does. Its tokens are Stripe's test PaymentMethod ids:

| token | card | charging it |
|---|---|---|
| `pm_card_visa` | visa 4242 | succeeds |
| `pm_card_mastercard` | mastercard 4444 | succeeds |
| `pm_card_visa_chargeDeclined` | visa 0002 | declined: `card_declined` |
| `pm_card_visa_chargeDeclinedInsufficientFunds` | visa 9995 | declined: `insufficient_funds` |
| `pm_card_chargeDeclinedExpiredCard` | visa 0069 | declined: `expired_card` |
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from billing.domain.ports import CardRejected, PaymentResult, RefundResult, SavedCard

T = TypeVar("T")


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    decline: str | None = None
    message: str = ""


TEST_CARDS = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_visa_chargeDeclined": TestCard(
        "visa", "0002", "card_declined", "The card was declined."
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", "insufficient_funds", "The card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", "expired_card", "The card has expired."
    ),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payment (
    idempotency_key TEXT PRIMARY KEY, id TEXT NOT NULL, amount INTEGER NOT NULL,
    payment_method TEXT NOT NULL, succeeded INTEGER NOT NULL, failure_code TEXT
);
CREATE TABLE IF NOT EXISTS refund (
    idempotency_key TEXT PRIMARY KEY, id TEXT NOT NULL, payment_id TEXT NOT NULL,
    amount INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS request (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, operation TEXT NOT NULL, idempotency_key TEXT
);
"""


class SandboxGateway:
    name = "sandbox"

    def __init__(self, store: str | Path) -> None:
        self._path = Path(store)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self._path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            yield db

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        """The store's work off the event loop, one piece at a time."""
        async with self._lock:
            return await asyncio.to_thread(work, *args)

    async def save_card(
        self, *, patient_id: UUID, token: str, customer_id: str | None
    ) -> SavedCard:
        card = TEST_CARDS.get(token)
        if card is None:
            raise CardRejected("invalid_processor_token", "The processor does not know this token.")
        customer = customer_id or await self._run(self._customer, str(patient_id))
        return SavedCard(customer, token, card.brand, card.last4, 12, 2034)

    def _customer(self, patient_id: str) -> str:
        with self._connect() as db:
            row = db.execute(
                "SELECT id FROM customer WHERE patient_id = ?", (patient_id,)
            ).fetchone()
            if row:
                return str(row[0])
            customer = f"cus_sandbox_{uuid.uuid4().hex[:14]}"
            db.execute("INSERT INTO customer VALUES (?, ?)", (customer, patient_id))
            return customer

    async def charge(
        self,
        *,
        amount_cents: int,
        currency: str,
        customer_id: str,
        payment_method_id: str,
        idempotency_key: str,
        charge_id: UUID,
    ) -> PaymentResult:
        return await self._run(self._charge, amount_cents, payment_method_id, idempotency_key)

    def _charge(self, amount: int, payment_method: str, key: str) -> PaymentResult:
        with self._connect() as db:
            db.execute(
                "INSERT INTO request (operation, idempotency_key) VALUES ('charge', ?)", (key,)
            )
            row = db.execute(
                "SELECT id, amount, succeeded, failure_code FROM payment WHERE idempotency_key = ?",
                (key,),
            ).fetchone()
            if row is None:
                card = TEST_CARDS.get(payment_method)
                decline = "card_declined" if card is None else card.decline
                row = (f"pi_sandbox_{uuid.uuid4().hex[:20]}", amount, decline is None, decline)
                db.execute(
                    "INSERT INTO payment VALUES (?, ?, ?, ?, ?, ?)",
                    (key, row[0], amount, payment_method, row[2], decline),
                )
            elif row[1] != amount:
                raise ValueError("idempotency key reused with another amount")
        payment_id, _, succeeded, code = row
        if succeeded:
            return PaymentResult(True, payment_id)
        message = next((c.message for c in TEST_CARDS.values() if c.decline == code), "Declined.")
        return PaymentResult(False, payment_id, code, message)

    async def refund(
        self, *, payment_id: str, amount_cents: int, idempotency_key: str, refund_id: UUID
    ) -> RefundResult:
        return await self._run(self._refund, payment_id, amount_cents, idempotency_key)

    def _refund(self, payment_id: str, amount: int, key: str) -> RefundResult:
        with self._connect() as db:
            db.execute(
                "INSERT INTO request (operation, idempotency_key) VALUES ('refund', ?)", (key,)
            )
            row = db.execute("SELECT id FROM refund WHERE idempotency_key = ?", (key,)).fetchone()
            if row is not None:
                return RefundResult(True, str(row[0]))
            paid = db.execute(
                "SELECT amount FROM payment WHERE id = ? AND succeeded", (payment_id,)
            ).fetchone()
            refunded = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM refund WHERE payment_id = ?", (payment_id,)
            ).fetchone()[0]
            if paid is None or refunded + amount > paid[0]:
                return RefundResult(False, None, "refund_exceeds_payment", "Nothing to refund.")
            refund = f"re_sandbox_{uuid.uuid4().hex[:20]}"
            db.execute("INSERT INTO refund VALUES (?, ?, ?, ?)", (key, refund, payment_id, amount))
            return RefundResult(True, refund)

    def requests(self, idempotency_key: str) -> int:
        """How often a key was presented (for tests and for support)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM request WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            return int(row[0])

    def payments(self) -> list[tuple[str, str, int, bool]]:
        """Every payment the sandbox took: (idempotency key, payment id, amount, succeeded)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT idempotency_key, id, amount, succeeded FROM payment ORDER BY rowid"
            ).fetchall()
        return [(str(k), str(i), int(a), bool(s)) for k, i, a, s in rows]

    async def close(self) -> None:
        return None

"""Refunds, the processor's webhooks, reconciliation, superbills, who may see what, and no card
number anywhere."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from billing.adapters.orm import metadata

pytestmark = pytest.mark.asyncio


async def paid_infusion(till, patient, ordinal=1, **kw):
    await till.complete(patient, ordinal, **kw)
    await till.run_due()
    return [c for c in await till.charges(patient) if c["ordinal"] == ordinal][-1]


async def refund(till, charge_id, cents, headers=None):
    return await till.client.post(
        "/v1/refunds",
        json={"charge_id": charge_id, "amount_cents": cents, "reason": "goodwill"},
        headers=headers or till.billing,
    )


async def test_partial_then_full_refunds_return_money_and_never_more_than_was_paid(till):
    patient = till.new_patient()
    await till.card(patient)
    charge = await paid_infusion(till, patient)
    first = await refund(till, charge["id"], 20000)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "pending"
    till.assert_problem(await refund(till, charge["id"], 40001), 422, "refund_exceeds_charge")
    rest = await refund(till, charge["id"], 40000)
    assert rest.status_code == 202
    await till.run_due()
    done = await till.client.get(f"/v1/refunds/{first.json()['id']}", headers=till.billing)
    assert done.json()["status"] == "succeeded"
    assert done.json()["processor_refund_id"].startswith("re_")
    ledger = await till.ledger(patient)
    assert [(e["kind"], e["charged_cents"], e["paid_cents"]) for e in ledger["entries"]] == [
        ("charge", 60000, 60000),
        ("refund", -20000, -20000),
        ("refund", -40000, -40000),
    ]
    assert ledger["paid_cents"] == 0 and ledger["balance_cents"] == 0
    assert len(await till.events("billing.refund.issued.v1")) == 2
    till.assert_problem(await refund(till, charge["id"], 1), 409, "charge_not_paid")


async def test_a_refund_with_the_same_idempotency_key_is_made_once(till):
    patient = till.new_patient()
    await till.card(patient)
    charge = await paid_infusion(till, patient)
    body = {"charge_id": charge["id"], "amount_cents": 5000, "reason": "goodwill"}
    headers = {**till.billing, "Idempotency-Key": "refund-once"}
    answers = [await till.client.post("/v1/refunds", json=body, headers=headers) for _ in range(3)]
    assert len({a.json()["id"] for a in answers}) == 1
    changed = await till.client.post(
        "/v1/refunds", json={**body, "amount_cents": 6000}, headers=headers
    )
    till.assert_problem(changed, 422, "idempotency_key_reused")
    await till.run_due()
    assert (await till.ledger(patient))["paid_cents"] == 55000


async def dispute(payment_id: str, event_id: str = "evt_dispute_1") -> dict:
    return {
        "id": event_id,
        "type": "charge.dispute.created",
        "data": {
            "object": {
                "id": "dp_test_1",
                "amount": 60000,
                "payment_intent": payment_id,
                "reason": "fraudulent",
            }
        },
    }


async def test_a_webhook_with_a_bad_or_stale_signature_is_refused_and_changes_nothing(till):
    patient = till.new_patient()
    await till.card(patient)
    charge = await paid_infusion(till, patient)
    event = await dispute(charge["payment_id"])
    forged = await till.webhook(event, secret="whsec_someone_else")
    till.assert_problem(forged, 400, "signature_invalid")
    stale = await till.webhook(event, at=till.clock.now() - timedelta(seconds=301))
    till.assert_problem(stale, 400, "signature_stale")
    unsigned = await till.client.post("/v1/webhooks/processor", json=event)
    till.assert_problem(unsigned, 400, "signature_missing")
    assert [e["kind"] for e in (await till.ledger(patient))["entries"]] == ["charge"]
    assert await till.events("billing.chargeback.recorded.v1") == []


async def test_the_same_webhook_event_twice_is_applied_once(till):
    patient = till.new_patient()
    await till.card(patient)
    charge = await paid_infusion(till, patient)
    event = await dispute(charge["payment_id"])
    first = await till.webhook(event)
    second = await till.webhook(event)
    assert (first.json()["applied"], second.json()["applied"]) == (True, False)
    ledger = await till.ledger(patient)
    assert [(e["kind"], e["paid_cents"]) for e in ledger["entries"]] == [
        ("charge", 60000),
        ("chargeback", -60000),
    ]
    assert ledger["balance_cents"] == 60000  # the money went back: the infusion is owed again
    assert len(await till.events("billing.chargeback.recorded.v1")) == 1


async def test_a_payment_the_processor_confirms_by_webhook_is_recorded_once(till):
    patient = till.new_patient()
    await till.complete(patient, 1)  # no card yet: the charge waits in the due-queue
    [charge] = await till.charges(patient)
    event = {
        "id": "evt_pi_1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_from_webhook", "metadata": {"charge_id": charge["id"]}}},
    }
    assert (await till.webhook(event)).json()["applied"] is True
    assert await till.run_due() == 0
    [paid] = await till.charges(patient)
    assert (paid["status"], paid["payment_id"]) == ("paid", "pi_from_webhook")
    assert (await till.ledger(patient))["paid_cents"] == 60000


SETTLEMENT_HEADER = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
    "source_id,payment_intent_id\n"
)


async def test_a_settlement_report_sorts_every_line_and_names_what_is_missing(till):
    a, b, c = till.new_patient(), till.new_patient(), till.new_patient()
    for patient in (a, b, c):
        await till.card(patient)
    paid_a = await paid_infusion(till, a)
    paid_b = await paid_infusion(till, b, 6)  # 45000, never settled
    paid_c = await paid_infusion(till, c, 6)
    refunded = await refund(till, paid_a["id"], 20000)
    await till.run_due()
    refund_id = (
        await till.client.get(f"/v1/refunds/{refunded.json()['id']}", headers=till.billing)
    ).json()["processor_refund_id"]
    await till.webhook(await dispute(paid_c["payment_id"]))
    pi_a, pi_c = paid_a["payment_id"], paid_c["payment_id"]
    lines = [
        f"txn_1,2026-11-20 17:00:00,usd,600.00,17.70,582.30,charge,ch_1,{pi_a}",
        f"txn_2,2026-11-20 17:01:00,usd,449.00,13.32,435.68,charge,ch_2,{pi_c}",
        "txn_3,2026-11-20 17:02:00,usd,100.00,3.20,96.80,charge,ch_3,pi_nobody_knows",
        f"txn_4,2026-11-20 17:03:00,usd,-200.00,0.00,-200.00,refund,{refund_id},{pi_a}",
        f"txn_5,2026-11-20 18:00:00,usd,-450.00,15.00,-465.00,dispute,dp_test_1,{pi_c}",
    ]
    csv = SETTLEMENT_HEADER + "\n".join(lines) + "\n"
    headers = {**till.billing, "Content-Type": "text/csv"}
    uploaded = await till.client.post(
        "/v1/reconciliation/settlements",
        content=csv,
        params={"settlement_date": "2026-11-22"},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    report = (
        await till.client.get(
            f"/v1/reconciliation/reports/{uploaded.json()['id']}", headers=till.billing
        )
    ).json()
    kinds = sorted((o["kind"], o["balance_transaction_id"]) for o in report["outcomes"])
    assert kinds == [
        ("amount_mismatch", "txn_2"),
        ("chargeback", "txn_5"),
        ("matched", "txn_1"),
        ("missing_in_ledger", "txn_3"),
        ("missing_in_settlement", None),
        ("refund", "txn_4"),
    ]
    missing = next(o for o in report["outcomes"] if o["kind"] == "missing_in_settlement")
    assert (missing["reference"], missing["ledger_cents"]) == (paid_b["id"], 45000)
    mismatch = next(o for o in report["outcomes"] if o["kind"] == "amount_mismatch")
    assert (mismatch["settlement_cents"], mismatch["ledger_cents"]) == (44900, 45000)
    assert report["settlement_date"] == "2026-11-22"
    assert report["summary"]["clean"] is False

    broken = await till.client.post(
        "/v1/reconciliation/settlements", content="id,amount\n1,2\n", headers=headers
    )
    till.assert_problem(broken, 422, "invalid_settlement_report")


async def test_a_superbill_lists_dates_codes_diagnoses_and_amounts_paid(till):
    patient = till.new_patient(("F33.2", "F43.10"))
    await till.card(patient)
    await paid_infusion(till, patient, 1, minutes=60)
    till.clock.advance(timedelta(days=2))
    await paid_infusion(till, patient, 2, minutes=240, family="pain", protocol="pain_booster")
    response = await till.client.get(
        f"/v1/patients/{patient}/superbill",
        params={"from": "2026-11-01", "to": "2026-11-30"},
        headers=till.patient(patient),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for expected in ("11/20/2026", "11/22/2026", "96365", "96366", "F33.2", "F43.10",
                     "$600.00", "$1,200.00", "$1,800.00", "Ada Quinn", "1234567893"):  # fmt: skip
        assert expected in text, expected
    assert re.search(r"96366\s+3", text)  # 240 minutes: three additional hours
    empty = await till.client.get(
        f"/v1/patients/{patient}/superbill",
        params={"from": "2026-12-01", "to": "2026-11-01"},
        headers=till.patient(patient),
    )
    till.assert_problem(empty, 422, "invalid_period")


async def test_a_patient_reaches_only_their_own_records_and_no_staff_tools(till):
    patient, other = till.new_patient(), till.new_patient()
    await till.card(other)
    charge = await paid_infusion(till, other)
    plan = await till.client.post(
        "/v1/financing-plans",
        json={"patient_id": other, "amount_cents": 90000, "installments": 3},
        headers=till.billing,
    )
    mine = till.patient(patient)
    for path in (
        f"/v1/patients/{other}/ledger",
        f"/v1/patients/{other}/charges",
        f"/v1/patients/{other}/payment-methods",
        f"/v1/patients/{other}/superbill?from=2026-11-01&to=2026-11-30",
        f"/v1/financing-plans/{plan.json()['id']}",
        f"/v1/charges/{charge['id']}",
    ):
        till.assert_problem(await till.client.get(path, headers=mine), 404)
    till.assert_problem(
        await till.client.post(f"/v1/financing-plans/{plan.json()['id']}/payoff", headers=mine),
        404,
    )
    till.assert_problem(await refund(till, charge["id"], 100, headers=mine), 403)
    till.assert_problem(await till.client.put("/v1/price-book", json={}, headers=mine), 403)
    for path in ("/v1/charges", "/v1/financing-plans", f"/v1/refunds/{uuid.uuid4()}",
                 f"/v1/reconciliation/reports/{uuid.uuid4()}"):  # fmt: skip
        till.assert_problem(await till.client.get(path, headers=mine), 403)
    scheduler = till.token("scheduler", "s-1")
    till.assert_problem(
        await till.client.get(f"/v1/patients/{other}/ledger", headers=scheduler), 403
    )


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    """Luhn-valid runs of 13-19 digits standing alone: a run of digits inside a hex id (the
    sandbox's `pi_sandbox_<hex>`) is an id, and random hex passes Luhn one time in ten."""
    candidates = re.findall(r"(?<![0-9A-Za-z_])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z_])", text)
    return [c for c in candidates if luhn_valid(re.sub(r"\D", "", c))]


async def test_no_card_number_is_kept_in_the_database_events_or_logs(till, capsys):
    patient = till.new_patient()
    for number in ("4242 4242 4242 4242", "4000000000000002", "5555-5555-5555-4444"):
        refused = await till.save_card(patient, number)
        till.assert_problem(refused, 422, "card_number_not_accepted")
        assert not card_numbers(refused.text)
    await till.card(patient)
    await paid_infusion(till, patient)
    await till.run_due()
    dumped = []
    async with till.app.state.infra.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = await conn.execute(sa.select(table))
            dumped.extend(str(tuple(row)) for row in rows)
    assert any("4242" in row for row in dumped)  # the brand's last four are kept...
    assert card_numbers("\n".join(dumped)) == []  # ...never a whole number
    assert card_numbers(str(await till.events())) == []
    captured = capsys.readouterr()
    assert card_numbers(captured.out + captured.err) == []

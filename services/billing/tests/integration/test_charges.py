"""Charges from booking's events: priced by tier and price-book version, one per cause, paid by
the saved card through the due-queue; a decline leaves a failed attempt and no ledger debit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from clinic_shared.contracts import booking
from clinic_shared.envelope import Envelope

pytestmark = pytest.mark.asyncio


async def test_infusions_are_priced_by_the_lifetime_ordinal_in_their_family(till):
    patient = till.new_patient()
    await till.card(patient)
    for ordinal in (1, 5, 6, 7):
        await till.complete(patient, ordinal)
    await till.complete(patient, 5, family="pain", protocol="pain_induction", minutes=240)
    await till.complete(patient, 6, family="pain", protocol="pain_booster", minutes=240)
    await till.complete(patient, 9, protocol="maintenance")
    await till.run_due()
    charged = sorted(
        (c["ordinal"], c["description"].split("(")[1], c["amount_cents"], c["status"])
        for c in await till.charges(patient)
    )
    assert [(o, cents, s) for o, _, cents, s in charged] == [
        (1, 60000, "paid"),
        (5, 60000, "paid"),
        (5, 120000, "paid"),
        (6, 45000, "paid"),
        (6, 95000, "paid"),
        (7, 45000, "paid"),
        (9, 45000, "paid"),
    ]
    ledger = await till.ledger(patient)
    assert ledger["charged_cents"] == ledger["paid_cents"] == 470000
    assert ledger["balance_cents"] == 0
    assert [e["kind"] for e in ledger["entries"]] == ["charge"] * 7


async def test_a_price_book_change_applies_from_its_effective_date_and_never_rewrites(till):
    patient = till.new_patient()
    await till.complete(patient, 6)
    starts = till.clock.now() + timedelta(days=1)
    body = {
        "effective_from": starts.isoformat(),
        "infusions": {
            "mood": [{"from_ordinal": 1, "cents": 65000}, {"from_ordinal": 6, "cents": 48000}],
            "pain": [{"from_ordinal": 1, "cents": 125000}, {"from_ordinal": 6, "cents": 99000}],
        },
        "consults": {"phone_consult": 0, "info_consult": 25000},
        "fees": {"late_cancellation": 12000, "no_show": 15000},
    }
    published = await till.client.put("/v1/price-book", json=body, headers=till.billing)
    assert published.status_code == 200, published.text
    assert published.json()["version"] == 1
    current = await till.client.get("/v1/price-book", headers=till.patient(patient))
    assert current.json()["version"] == 0  # not in effect yet
    await till.complete(patient, 7, at=starts - timedelta(seconds=1))
    till.clock.set(starts)
    await till.complete(patient, 8)
    amounts = sorted((c["ordinal"], c["amount_cents"], c["price_book_version"])
                     for c in await till.charges(patient))  # fmt: skip
    assert amounts == [(6, 45000, 0), (7, 45000, 0), (8, 48000, 1)]
    later = await till.client.get("/v1/price-book", headers=till.patient(patient))
    assert later.json()["infusions"]["mood"][1] == {"from_ordinal": 6, "cents": 48000}


async def test_a_price_book_may_not_start_in_the_past_or_leave_ordinals_unpriced(till):
    base = {
        "infusions": {
            "mood": [{"from_ordinal": 2, "cents": 65000}],
            "pain": [{"from_ordinal": 1, "cents": 125000}],
        },
        "consults": {"info_consult": 25000},
        "fees": {"late_cancellation": 12000, "no_show": 15000},
    }
    gap = await till.client.put("/v1/price-book", json=base, headers=till.billing)
    till.assert_problem(gap, 422, "invalid_price_book")
    base["infusions"]["mood"][0]["from_ordinal"] = 1
    past = {**base, "effective_from": (till.clock.now() - timedelta(hours=1)).isoformat()}
    till.assert_problem(
        await till.client.put("/v1/price-book", json=past, headers=till.billing),
        422,
        "effective_from_in_past",
    )
    versions = await till.client.get("/v1/price-book/versions", headers=till.billing)
    assert [v["version"] for v in versions.json()] == [0]


async def test_a_completed_infusion_delivered_ten_times_is_charged_once(till):
    patient = till.new_patient()
    await till.card(patient)
    event = await till.complete(patient, 1)
    envelope = till.delivered[-1]
    for _ in range(9):
        assert not await till.deliver(event, envelope=envelope)
    for _ in range(3):  # booking publishing the same fact again under new event ids
        assert await till.deliver(
            event, envelope=Envelope.wrap(event, occurred_at=till.clock.now())
        )
    assert await till.run_due() == 1
    assert await till.run_due() == 0
    charges = await till.charges(patient)
    assert len(charges) == 1
    assert len(till.gateway.payments()) == 1
    assert len(await till.events("billing.payment.succeeded.v1")) == 1
    assert (await till.ledger(patient))["paid_cents"] == 60000


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ],
)
async def test_a_declined_card_leaves_a_failed_attempt_no_debit_and_the_failure_event(
    till, token, code
):
    patient = till.new_patient()
    await till.card(patient, token)
    await till.complete(patient, 1)
    await till.run_due()
    [charge] = await till.charges(patient)
    assert (charge["status"], charge["failure_code"]) == ("failed", code)
    detail = await till.client.get(f"/v1/charges/{charge['id']}", headers=till.patient(patient))
    [attempt] = detail.json()["attempts"]
    assert attempt["succeeded"] is False
    assert attempt["failure_code"] == code
    assert attempt["failure_message"]
    ledger = await till.ledger(patient)
    assert ledger["entries"] == [] and ledger["balance_cents"] == 0
    [failed] = await till.events("billing.payment.failed.v1")
    assert failed["payload"]["failure_code"] == code
    assert failed["payload"]["final"] is True
    assert await till.events("billing.payment.succeeded.v1") == []


async def test_a_new_card_charges_what_the_declined_one_could_not(till):
    patient = till.new_patient()
    await till.card(patient, "pm_card_visa_chargeDeclinedInsufficientFunds")
    await till.complete(patient, 1)
    await till.run_due()
    await till.card(patient, "pm_card_mastercard")
    await till.run_due()
    [charge] = await till.charges(patient)
    assert charge["status"] == "paid"
    detail = (await till.client.get(f"/v1/charges/{charge['id']}", headers=till.billing)).json()
    keys = [a["idempotency_key"] for a in detail["attempts"]]
    assert keys == [f"charge-{charge['id']}-1", f"charge-{charge['id']}-2"]
    assert (await till.ledger(patient))["paid_cents"] == 60000


async def test_without_a_card_on_file_the_charge_fails_for_that_reason(till):
    patient = till.new_patient()
    await till.complete(patient, 1)
    await till.run_due()
    [charge] = await till.charges(patient)
    assert (charge["status"], charge["failure_code"]) == ("failed", "no_card_on_file")
    assert till.gateway.payments() == []


async def test_late_cancellation_and_no_show_fees_are_charged_unless_waived(till):
    patient = till.new_patient()
    await till.card(patient)
    pid = uuid.UUID(patient)
    start = till.clock.now() + timedelta(hours=20)

    def cancelled(waived: bool = False, timing: str = "late") -> booking.AppointmentCancelled:
        return booking.AppointmentCancelled(
            appointment_id=uuid.uuid4(), course_id=uuid.uuid4(), patient_id=pid, start=start,
            cancelled_at=till.clock.now(), cancelled_by="patient", timing=timing,
            seconds_before_start=72000, fee_cents=10000, fee_waived=waived, reason="cancelled",
        )  # fmt: skip

    await till.deliver(cancelled())
    await till.deliver(cancelled(waived=True))
    await till.deliver(cancelled(timing="on_time"))
    no_show = booking.AppointmentNoShow(
        appointment_id=uuid.uuid4(), course_id=uuid.uuid4(), patient_id=pid, start=start,
        marked_at=till.clock.now(), fee_cents=15000, fee_waived=False,
    )  # fmt: skip
    await till.deliver(no_show)
    await till.run_due()
    fees = sorted((c["kind"], c["amount_cents"], c["status"]) for c in await till.charges(patient))
    assert fees == [("late_cancellation", 10000, "paid"), ("no_show", 15000, "paid")]
    ledger = await till.ledger(patient)
    assert [e["kind"] for e in ledger["entries"]] == ["fee", "fee"]

    # waived after it was paid: refunded in full
    await till.deliver(
        booking.FeeWaived(
            appointment_id=no_show.appointment_id,
            course_id=no_show.course_id,
            patient_id=pid,
            fee_kind="no_show",
            waived_at=till.clock.now(),
        )
    )
    await till.run_due()
    ledger = await till.ledger(patient)
    assert ledger["entries"][-1]["kind"] == "refund"
    assert (ledger["charged_cents"], ledger["paid_cents"]) == (10000, 10000)


async def test_a_fee_waived_before_it_is_paid_is_never_charged(till):
    patient = till.new_patient()
    await till.card(patient)
    pid = uuid.UUID(patient)
    no_show = booking.AppointmentNoShow(
        appointment_id=uuid.uuid4(), course_id=uuid.uuid4(), patient_id=pid,
        start=till.clock.now(), marked_at=till.clock.now(), fee_cents=15000, fee_waived=False,
    )  # fmt: skip
    await till.deliver(no_show)
    await till.deliver(
        booking.FeeWaived(
            appointment_id=no_show.appointment_id,
            course_id=no_show.course_id,
            patient_id=pid,
            fee_kind="no_show",
            waived_at=till.clock.now(),
        )
    )
    await till.run_due()
    [fee] = await till.charges(patient)
    assert fee["status"] == "waived"
    assert till.gateway.payments() == []


async def test_an_info_consult_is_charged_and_a_phone_consult_is_free(till):
    patient = till.new_patient()
    await till.card(patient)
    for protocol in ("info_consult", "phone_consult"):
        await till.deliver(
            booking.ConsultCompleted(
                appointment_id=uuid.uuid4(),
                course_id=uuid.uuid4(),
                patient_id=uuid.UUID(patient),
                protocol=protocol,
                start=till.clock.now(),
                completed_at=till.clock.now(),
            )
        )
    await till.run_due()
    assert [(c["kind"], c["amount_cents"], c["status"]) for c in await till.charges(patient)] == [
        ("consult", 20000, "paid")
    ]

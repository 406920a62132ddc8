"""Interest-free financing plans: exact installments on clinic calendar dates, charged by the
due-queue, retried 3 times over 7 days, then delinquent; early payoff."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

pytestmark = pytest.mark.asyncio


async def make_plan(till, body, headers=None):
    response = await till.client.post(
        "/v1/financing-plans", json=body, headers=headers or till.billing
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("count", [3, 6, 12])
async def test_installments_sum_to_an_awkward_amount_to_the_cent(till, count):
    patient = till.new_patient()
    plan = await make_plan(
        till, {"patient_id": patient, "amount_cents": 100001, "installments": count}
    )
    amounts = [i["amount_cents"] for i in plan["installments"]]
    assert sum(amounts) == 100001
    assert len(amounts) == count
    base = 100001 // count
    assert amounts == [100001 - base * (count - 1)] + [base] * (count - 1)
    assert plan["apr_percent"] == 0
    dates = [i["due_date"] for i in plan["installments"]]
    assert dates[:3] == ["2026-11-20", "2026-12-20", "2027-01-20"]
    # due at the start of each date in the clinic's zone (Portland: 08:00 UTC in winter)
    assert plan["installments"][1]["due_at"] == "2026-12-20T08:00:00Z"


async def test_due_dates_stay_on_the_day_of_the_month_or_the_months_last_day(till):
    till.clock.set(datetime(2027, 1, 31, 20, 0, tzinfo=UTC))  # Jan 31, noon in Portland
    patient = till.new_patient()
    plan = await make_plan(till, {"patient_id": patient, "amount_cents": 90000, "installments": 3})
    assert [i["due_date"] for i in plan["installments"]] == [
        "2027-01-31", "2027-02-28", "2027-03-31",
    ]  # fmt: skip
    # March 31 begins at 07:00 UTC: daylight saving time started on March 14
    assert plan["installments"][2]["due_at"] == "2027-03-31T07:00:00Z"


async def test_a_financed_course_is_charged_by_installments_not_per_infusion(till):
    patient = till.new_patient()
    await till.card(patient)
    course = await till.book_course(patient, infusions=6)
    plan = await make_plan(
        till,
        {"patient_id": patient, "course_id": str(course), "installments": 3},
        headers=till.patient(patient),
    )
    assert plan["amount_cents"] == 5 * 60000 + 45000
    await till.run_due()  # the first installment is due today
    await till.complete(patient, 1, course_id=course)
    await till.run_due()
    charges = await till.charges(patient)
    infusion = next(c for c in charges if c["kind"] == "infusion")
    assert (infusion["status"], infusion["plan_id"]) == ("financed", plan["id"])
    assert [(amount, ok) for _, _, amount, ok in till.gateway.payments()] == [(115000, True)]
    ledger = await till.ledger(patient)
    assert [(e["kind"], e["charged_cents"], e["paid_cents"]) for e in ledger["entries"]] == [
        ("plan", 345000, 0),
        ("installment", 0, 115000),
    ]
    assert ledger["balance_cents"] == 230000
    again = await till.client.post(
        "/v1/financing-plans",
        json={"patient_id": patient, "course_id": str(course), "installments": 6},
        headers=till.billing,
    )
    till.assert_problem(again, 409, "course_already_financed")


async def test_a_failed_installment_is_retried_three_times_over_seven_days_then_delinquent(till):
    patient = till.new_patient()
    await till.card(patient, "pm_card_visa_chargeDeclinedInsufficientFunds")
    plan = await make_plan(till, {"patient_id": patient, "amount_cents": 60000, "installments": 3})
    first = plan["installments"][0]
    await till.run_due()
    retries = []
    for _ in range(3):
        detail = (await till.client.get(f"/v1/charges/{first['id']}", headers=till.billing)).json()
        assert detail["status"] == "retrying"
        retries.append(datetime.fromisoformat(detail["due_at"]))
        till.clock.set(retries[-1])
        assert await till.run_due() == 1
    assert [r.astimezone(UTC).date() for r in retries] == [
        date(2026, 11, 22), date(2026, 11, 25), date(2026, 11, 27),
    ]  # fmt: skip
    detail = (await till.client.get(f"/v1/charges/{first['id']}", headers=till.billing)).json()
    assert detail["status"] == "failed"
    assert len({a["idempotency_key"] for a in detail["attempts"]}) == 4
    failures = await till.events("billing.payment.failed.v1")
    assert [f["payload"]["final"] for f in failures] == [False, False, False, True]
    [delinquent] = await till.events("billing.plan.delinquent.v1")
    assert delinquent["payload"]["plan_id"] == plan["id"]
    listed = await till.client.get(
        "/v1/financing-plans", params={"status": "delinquent"}, headers=till.billing
    )
    assert [p["id"] for p in listed.json()] == [plan["id"]]
    # a delinquent plan charges nothing more on its own
    till.clock.set(datetime(2026, 12, 21, 12, tzinfo=UTC))
    assert await till.run_due() == 1  # the second installment is claimed and paused
    tried = {key.rsplit("-", 1)[0] for key, *_ in till.gateway.payments()}
    assert tried == {f"charge-{first['id']}"}  # the second installment never reached the card
    assert (await till.ledger(patient))["paid_cents"] == 0


async def test_an_early_payoff_charges_what_is_left_and_closes_the_plan(till):
    patient = till.new_patient()
    await till.card(patient)
    plan = await make_plan(till, {"patient_id": patient, "amount_cents": 100001, "installments": 3})
    await till.run_due()
    response = await till.client.post(
        f"/v1/financing-plans/{plan['id']}/payoff", headers=till.patient(patient)
    )
    assert response.status_code == 202, response.text
    assert response.json()["payoff"]["amount_cents"] == 66666
    await till.run_due()
    found = (await till.client.get(f"/v1/financing-plans/{plan['id']}",
                                   headers=till.patient(patient))).json()  # fmt: skip
    assert found["status"] == "paid"
    assert [i["status"] for i in found["installments"]] == ["paid", "cancelled", "cancelled"]
    assert (found["paid_cents"], found["remaining_cents"]) == (100001, 0)
    assert (await till.ledger(patient))["balance_cents"] == 0
    [paid] = await till.events("billing.plan.paid.v1")
    assert paid["payload"]["early_payoff"] is True
    till.clock.advance(timedelta(days=40))
    assert await till.run_due() == 0
    again = await till.client.post(f"/v1/financing-plans/{plan['id']}/payoff", headers=till.billing)
    till.assert_problem(again, 409, "plan_paid")


async def test_plan_requests_outside_the_rules_are_refused_and_change_nothing(till):
    patient = till.new_patient()
    other = till.new_patient()
    course = await till.book_course(other)
    cases = [
        ({"patient_id": patient, "amount_cents": 90000, "installments": 4}, till.billing, 422),
        ({"patient_id": patient, "amount_cents": 90000, "installments": 3},
         till.patient(patient), 403),
        ({"patient_id": patient, "course_id": str(course), "installments": 3}, till.billing, 404),
        ({"patient_id": patient, "course_id": str(uuid.uuid4()), "installments": 3},
         till.billing, 404),
        ({"patient_id": other, "course_id": str(course), "installments": 3},
         till.patient(patient), 404),
        ({"patient_id": patient, "installments": 3}, till.billing, 422),
    ]  # fmt: skip
    for body, headers, status in cases:
        response = await till.client.post("/v1/financing-plans", json=body, headers=headers)
        till.assert_problem(response, status)
    listed = await till.client.get("/v1/financing-plans", headers=till.billing)
    assert listed.json() == []
    assert await till.events() == []

"""The invariants of a clinic's day under faults (`scenario.py`), read from the databases,
the broker, the SMTP server, the text sinks and the card sandbox: never from logs. The last two
tests inject faults of their own (every event delivered again; a stalled consumer) after the
invariants were read.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from itertools import pairwise
from typing import Any

import httpx
import pytest

from clinic_shared.faults import CONSUMER_BEFORE_APPLY
from clinic_shared.kafka import make_producer
from tests.e2e.conftest import eventually

from .harness import CONSUMES, SERVICES, Clinic, Desk, patient_body, readers_of
from .scenario import READ_BY_EVERY_CONSUMER, UNKNOWN_VERSION, ClinicDay, Day

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def day(clinic: Clinic) -> Day:
    async with httpx.AsyncClient(timeout=30) as client:
        return await ClinicDay(clinic, Desk(client, clinic)).run()


# -------------------------------------------------------------------------- invariants


async def test_every_committed_outbox_row_was_published(clinic: Clinic, day: Day):
    assert await clinic.unsent_outbox_rows() == dict.fromkeys(SERVICES, 0)
    for service in SERVICES:
        committed = {r[0] for r in await clinic.rows(service, "SELECT event_id FROM outbox")}
        published = {
            dict(r.headers).get("ce_id", b"").decode() for r in await clinic.records(service)
        }
        missing = committed - published
        assert not missing, f"{service}: outbox events never on {clinic.topic(service)}: {missing}"


async def test_each_consumer_applied_every_event_it_handles(clinic: Clinic, day: Day):
    """Nothing lost between an outbox and a consumer's inbox, whatever was killed, restarted
    or rebalanced on the way (the inbox's key makes each applied once)."""
    handled = await clinic.handled_types()
    for service, producers in CONSUMES.items():
        inbox = {
            r[0]
            for r in await clinic.rows(
                service, "SELECT event_id FROM inbox WHERE consumer = :c", c=clinic.group(service)
            )
        }
        for producer in producers:
            events = await clinic.rows(producer, "SELECT event_id, event_type FROM outbox")
            missing = [(e, t) for e, t in events if t in handled[service] and e not in inbox]
            assert not missing, f"{service} never applied these {producer} events: {missing}"


async def test_each_completed_infusion_and_each_fee_is_charged_once(clinic: Clinic, day: Day):
    completed = await clinic.rows(
        "booking",
        "SELECT id FROM appointment WHERE status = 'completed' AND family IN ('mood', 'pain')",
    )
    fees = await clinic.rows(
        "booking", "SELECT id, status FROM appointment WHERE fee_cents > 0 AND NOT fee_waived"
    )
    owed = {("infusion", str(i)) for (i,) in completed} | {
        ("no_show" if status == "no_show" else "late_cancellation", str(i)) for i, status in fees
    }
    charged = Counter(
        (kind, str(cause))
        for kind, cause in await clinic.rows(
            "billing",
            "SELECT kind, cause_id FROM charge "
            "WHERE kind IN ('infusion', 'late_cancellation', 'no_show')",
        )
    )
    twice = {cause: n for cause, n in charged.items() if n > 1}
    assert not twice, f"charged more than once: {twice}"
    assert set(charged) == owed, (
        f"owed but not charged: {owed - set(charged)}; charged but not owed: {set(charged) - owed}"
    )
    kinds = Counter(kind for kind, _ in owed)
    assert kinds["infusion"] >= 3 and kinds["late_cancellation"] >= 1 and kinds["no_show"] >= 1


async def test_the_processor_took_one_payment_per_paid_charge(clinic: Clinic, day: Day):
    charges = {
        str(charge_id): (status, amount)
        for charge_id, status, amount in await clinic.rows(
            "billing", "SELECT id, status, amount_cents FROM charge"
        )
    }
    taken: dict[str, list[int]] = defaultdict(list)
    for key, _, amount, succeeded in clinic.sandbox.payments():
        if succeeded:
            taken[key.removeprefix("charge-").rsplit("-", 1)[0]].append(amount)
    for charge_id, (status, amount) in charges.items():
        expected = [amount] if status == "paid" else []
        assert taken.get(charge_id, []) == expected, (
            f"charge {charge_id} ({status}, {amount} cents): the processor took {taken[charge_id]}"
        )
    assert set(taken) <= set(charges), f"payments for no charge: {set(taken) - set(charges)}"
    crashed = day.charge_key_at_crash
    assert clinic.sandbox.requests(crashed) == 2, f"{crashed} not presented again after the crash"
    assert charges[crashed.removeprefix("charge-").rsplit("-", 1)[0]][0] == "paid"


async def test_each_released_block_is_offered_once_per_entry_and_booked_once(
    clinic: Clinic, day: Day
):
    repeated = await clinic.rows(
        "waitlist",
        "SELECT block_id, entry_id, count(*) FROM offer GROUP BY block_id, entry_id "
        "HAVING count(*) > 1",
    )
    assert not repeated, f"an entry offered one block more than once: {repeated}"
    live = await clinic.rows(
        "waitlist",
        "SELECT block_id, count(*) FROM offer WHERE status IN ('open', 'accepting') "
        "GROUP BY block_id HAVING count(*) > 1",
    )
    assert not live, f"blocks with two live offers: {live}"
    released = await clinic.rows(
        "booking",
        "SELECT payload FROM outbox WHERE event_type = 'booking.block.released.v1'",
    )
    blocks = {str(r[0]) for r in await clinic.rows("waitlist", "SELECT hold_id FROM block")}
    holds = {r[0]["hold_id"] for r in released}
    assert holds and holds <= blocks, f"released blocks the waitlist never got: {holds - blocks}"
    accepted = {
        str(r[0])
        for r in await clinic.rows("waitlist", "SELECT id FROM offer WHERE status = 'accepted'")
    }
    booked = Counter(
        str(r[0])
        for r in await clinic.rows(
            "booking", "SELECT offer_id FROM course WHERE offer_id IS NOT NULL"
        )
    )
    assert booked == Counter(accepted), f"accepted offers vs courses booked for them: {booked}"
    series = await clinic.rows(
        "waitlist",
        "SELECT patient_id, status FROM offer WHERE block_id = :hold",
        hold=uuid.UUID(day.series_hold),
    )
    by_patient = {str(p): s for p, s in series}
    assert {
        role: by_patient.get(day.patients[role]) for role in day.series_offers
    } == day.series_offers


async def test_each_message_reached_its_provider_at_most_once(clinic: Clinic, day: Day):
    received = clinic.provider_receipts()
    assert not {m: n for m, n in received.items() if n > 1}, "a message sent twice"
    statuses = {
        str(m): (kind, status)
        for m, kind, status in await clinic.rows("notify", "SELECT id, kind, status FROM message")
    }
    unknown_ids = set(received) - set(statuses)
    assert not unknown_ids, f"providers received messages notify never made: {unknown_ids}"
    never_arrived = [m for m, (_, s) in statuses.items() if s == "sent" and m not in received]
    assert not never_arrived, f"recorded sent, never received: {never_arrived}"
    unrecorded = {m: statuses[m] for m in received if statuses[m][1] != "sent"}
    crashed = {day.message_at_crash: (statuses[day.message_at_crash][0], "unknown")}
    assert unrecorded == crashed, (
        f"received but not recorded sent: {unrecorded}; only the crash's {crashed} may be"
    )
    sent_kinds = Counter(kind for kind, status in statuses.values() if status == "sent")
    for kind in ("welcome", "confirmation", "fasting", "ride_home", "medication_hold", "receipt"):
        assert sent_kinds[kind] >= 1, f"no {kind} message sent: {sent_kinds}"
    duplicated = await clinic.rows(
        "notify",
        "SELECT kind, step, subject_id, channel, count(*) FROM message "
        "GROUP BY kind, step, subject_id, channel, patient_id HAVING count(*) > 1",
    )
    assert not duplicated, f"one reminder planned twice: {duplicated}"


async def test_no_chair_holds_two_live_appointments_at_once(clinic: Clinic, day: Day):
    live = await clinic.rows(
        "booking",
        "SELECT resource_id, start_at, end_at, id FROM appointment "
        "WHERE status IN ('booked', 'held', 'checked_in', 'completed') ORDER BY 1, 2",
    )
    assert len(live) > 20, f"the day booked only {len(live)} appointments"
    overlaps = [(a[3], b[3]) for a, b in pairwise(live) if a[0] == b[0] and b[1] < a[2]]
    assert not overlaps, f"appointments sharing a chair at once: {overlaps}"


async def test_every_ledger_balances(clinic: Clinic, day: Day):
    assert not await clinic.due_work_waiting(), "charges still waiting at the end"
    entries: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for patient_id, charged, paid in await clinic.rows(
        "billing", "SELECT patient_id, charged_cents, paid_cents FROM ledger_entry"
    ):
        entries[str(patient_id)].append((charged, paid))
    assert day.patients["financed"] in entries and day.patients["infused"] in entries
    async with httpx.AsyncClient(timeout=30) as client:
        desk = Desk(client, clinic)
        for patient_id, rows in entries.items():
            ledger = await desk.ledger(patient_id)
            charged, paid = sum(c for c, _ in rows), sum(p for _, p in rows)
            assert (ledger["charged_cents"], ledger["paid_cents"]) == (charged, paid)
            assert (
                ledger["balance_cents"] == charged - paid == ledger["entries"][-1]["balance_cents"]
            )
            assert ledger["balance_cents"] == 0, f"{patient_id} still owes {ledger}"
    paid_charges = await clinic.rows(
        "billing", "SELECT id, amount_cents FROM charge WHERE status = 'paid'"
    )
    ledger_payments = Counter(
        (str(c), p)
        for c, p in await clinic.rows(
            "billing", "SELECT charge_id, paid_cents FROM ledger_entry WHERE charge_id IS NOT NULL"
        )
    )
    charged_by_card = Counter((str(c), a) for c, a in paid_charges)
    assert ledger_payments == charged_by_card, (
        f"ledger payments without a paid charge: {ledger_payments - charged_by_card}; "
        f"paid charges without a ledger payment: {charged_by_card - ledger_payments}"
    )
    for plan_id, amount, status, installments in await clinic.rows(
        "billing",
        "SELECT p.id, p.amount_cents, p.status, sum(c.amount_cents) FROM financing_plan p "
        "JOIN charge c ON c.plan_id = p.id AND c.kind = 'installment' "
        "GROUP BY p.id, p.amount_cents, p.status",
    ):
        assert installments == amount, f"plan {plan_id}: installments {installments} of {amount}"
        assert status == "paid", f"plan {plan_id} is {status}"


async def test_every_consumer_group_is_caught_up_and_reports_live(clinic: Clinic, day: Day):
    assert await clinic.lagging_groups() == []
    for service in SERVICES:
        [consumer] = clinic.running(service, "consumer")
        answer = await clinic.liveness(consumer)
        assert answer is not None, f"{service}'s consumer serves no liveness"
        status, health = answer
        assert (status, health["status"], health["lag"]) == (200, "ok", 0), health


async def test_malformed_messages_are_dead_lettered_and_their_partitions_keep_flowing(
    clinic: Clinic, day: Day
):
    """Each malformed record went to `<topic>.DLT` once per consumer group reading the topic,
    with its origin in the headers; every group went on past it (caught up, and every later
    event applied: `test_each_consumer_applied_every_event_it_handles`)."""
    assert day.malformed
    for producer in READ_BY_EVERY_CONSUMER:
        dead = Counter(
            (
                h["dlt.origin.topic"].decode(),
                int(h["dlt.origin.partition"]),
                int(h["dlt.origin.offset"]),
                h["dlt.consumer"].decode(),
            )
            for h in (dict(r.headers) for r in await clinic.dead_letters(producer))
        )
        for record in (i for i in day.malformed if i.topic == clinic.topic(producer)):
            for service in readers_of(producer):
                where = (record.topic, record.partition, record.offset, clinic.group(service))
                assert dead[where] == 1, f"{record}: {dead[where]} dead letters from {service}"
    assert await clinic.lagging_groups() == [], "a partition stopped at a malformed message"


async def test_an_event_type_of_an_unknown_version_is_skipped_and_its_partition_keeps_flowing(
    clinic: Clinic, day: Day
):
    """A breaking change is a new `.vN` published beside `.v1` (ENGINEERING.md), so a consumer
    that does not know a version skips it: it applies nothing and dead-letters nothing (every
    copy of every event of the new version would otherwise land in the DLT), and the partition
    goes on."""
    assert day.unknown_versions
    ids = {
        producer: {
            dict(r.headers)["ce_id"]
            for r in await clinic.records(producer)
            if dict(r.headers).get("ce_type", b"").endswith(UNKNOWN_VERSION.encode())
        }
        for producer in READ_BY_EVERY_CONSUMER
    }
    assert sum(map(len, ids.values())) == len(day.unknown_versions)
    for producer, unknown in ids.items():
        dead = {dict(r.headers).get("ce_id") for r in await clinic.dead_letters(producer)}
        assert not unknown & dead, f"{producer}: an unknown version dead-lettered"
        for service in readers_of(producer):
            applied = {
                r[0].encode() for r in await clinic.rows(service, "SELECT event_id FROM inbox")
            }
            assert not unknown & applied, f"{service} applied an unknown version"
    assert await clinic.lagging_groups() == [], "a partition stopped at an unknown version"


# -------------------------------------------------------------------------- faults of their own


async def test_every_event_delivered_again_changes_nothing(clinic: Clinic, day: Day):
    """Every event on the topics consumers read, produced again as it is (key, value,
    headers): each consumer counts them as duplicates, and no effect changes."""
    await eventually(clinic.settled, 60, "settled before delivering again")
    handled = await clinic.handled_types()
    before = await _effects(clinic)
    duplicates_before = await _duplicates_counted(clinic)
    again: Counter[str] = Counter()
    producer = make_producer(clinic.bootstrap, client_id="faults-redeliver")
    await producer.start()
    try:
        for name in READ_BY_EVERY_CONSUMER:
            ours = {r[0] for r in await clinic.rows(name, "SELECT event_id FROM outbox")}
            sends = []
            for record in await clinic.records(name):
                headers = dict(record.headers)
                if headers.get("ce_id", b"").decode() in ours:
                    sends.append(
                        await producer.send(
                            clinic.topic(name),
                            value=record.value,
                            key=record.key,
                            headers=list(record.headers),
                        )
                    )
                    event_type = headers["ce_type"].decode()
                    again.update(s for s in readers_of(name) if event_type in handled[s])
            assert len(sends) >= len(ours), f"{name}: fewer records than outbox events"
            await asyncio.gather(*sends)
    finally:
        await producer.stop()
    await eventually(clinic.settled, 120, "every consumer through the events delivered again")
    counted = await _duplicates_counted(clinic)
    for service, expected in again.items():
        seen = counted[service] - duplicates_before[service]
        assert seen >= expected, f"{service} counted {seen} duplicates of {expected} sent again"
    after = await _effects(clinic)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"delivering every event again changed: {changed}"


async def _duplicates_counted(clinic: Clinic) -> dict[str, int]:
    """Per service, the duplicates its (one) consumer process has skipped so far."""
    counted = {}
    for service in SERVICES:
        [consumer] = clinic.running(service, "consumer")
        answer = await clinic.liveness(consumer)
        assert answer is not None, f"{service}'s consumer serves no liveness"
        counted[service] = int(answer[1]["duplicates"])
    return counted


async def _effects(clinic: Clinic) -> dict[str, Any]:
    """What the events did, counted: rows by table and state, and the processor's payments."""
    tables = {
        "booking": ("appointment", "course", "hold", "inbox", "outbox"),
        "waitlist": ("offer", "block", "entry", "inbox", "outbox"),
        "billing": (
            "charge",
            "charge_attempt",
            "ledger_entry",
            "financing_plan",
            "inbox",
            "outbox",
        ),
        "notify": ("message", "delivery", "inbox", "outbox"),
    }
    counted: dict[str, Any] = {"processor payments": len(clinic.sandbox.payments())}
    for service, names in tables.items():
        for table in names:
            counted[f"{service}.{table}"] = await clinic.scalar(
                service, f"SELECT count(*) FROM {table}"
            )
    for service, table in (
        ("booking", "appointment"),
        ("waitlist", "offer"),
        ("billing", "charge"),
    ):
        rows = await clinic.rows(service, f"SELECT status, count(*) FROM {table} GROUP BY status")
        counted[f"{service}.{table} by status"] = dict(sorted((s, n) for s, n in rows))
    return counted


async def test_a_stalled_consumer_is_reported_and_its_replacement_catches_up(
    clinic: Clinic, day: Day
):
    for consumer in clinic.running("notify", "consumer"):
        consumer.stop()  # SIGTERM: it leaves the group at once
    parked = clinic.fault_point(CONSUMER_BEFORE_APPLY)
    stuck = clinic.start(
        "notify", "consumer", NOTIFY_CONSUMER_STALL_AFTER_SECONDS="2", **parked.env
    )
    async with httpx.AsyncClient(timeout=30) as client:
        registered = await Desk(client, clinic).register(patient_body(99), "walk-in-stall")
    assert registered.status_code == 201, registered.text
    patient_id = registered.json()["id"]
    await parked.reached()

    stalled: dict[str, Any] = {}

    async def reported_stalled() -> bool:
        answer = await clinic.liveness(stuck)
        stalled.update({"code": answer[0], **answer[1]} if answer else {})
        return stalled.get("code") == 503

    await eventually(reported_stalled, 30, "the parked consumer's /livez answering 503")
    assert stalled["status"] == "stalled" and stalled["reason"], stalled
    assert stalled["lag"] > 0, stalled

    stuck.kill()
    healthy = clinic.start("notify", "consumer")

    async def welcomed() -> bool:
        made = await clinic.scalar(
            "notify",
            "SELECT count(*) FROM message WHERE patient_id = :p AND kind = 'welcome'",
            p=uuid.UUID(patient_id),
        )
        return made == 1 and not await clinic.lagging_groups()

    await eventually(welcomed, 60, "the replacement applying what the stalled one held")

    async def reported_live() -> bool:
        answer = await clinic.liveness(healthy)
        return answer is not None and (answer[0], answer[1]["status"]) == (200, "ok")

    await eventually(reported_live, 30, "the replacement's /livez answering 200")

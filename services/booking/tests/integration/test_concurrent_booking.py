"""Bursts of concurrent course bookings for overlapping slots: exactly one wins, the rest get 409,
never a 5xx, and the table never holds an overlap. Also: the database itself refuses one."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from booking.adapters.orm import AppointmentRow

BURSTS = 8
CONTENDERS = 50
APPOINTMENT = AppointmentRow.__table__


async def _burst(clinic, patients: list[str], day: datetime, chair: str) -> list[int]:
    async def attempt(index: int, patient_id: str) -> int:
        # Every request overlaps every other on the chair: starts 0, 30 or 60 minutes apart
        # and each first visit lasts 150 minutes.
        first = day + timedelta(minutes=30 * (index % 3))
        second = first + timedelta(days=2)
        response = await clinic.book(
            patient_id, "mood_booster", [first.isoformat(), second.isoformat()], chair
        )
        return response.status_code

    return list(await asyncio.gather(*(attempt(i, p) for i, p in enumerate(patients))))


async def test_concurrent_bookings_of_overlapping_slots_let_exactly_one_win(clinic):
    patients = [await clinic.register() for _ in range(CONTENDERS)]
    monday = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 09:00 in Portland
    bursts = [
        (monday + timedelta(weeks=week), f"chair-{chair}")
        for week in (0, 1)
        for chair in (1, 2, 3, 4)
    ]

    for day, chair in bursts[:BURSTS]:
        statuses = await _burst(clinic, patients, day, chair)
        assert statuses.count(201) == 1, statuses
        assert statuses.count(409) == CONTENDERS - 1, statuses

    occupancies = await clinic.live_occupancies()
    assert len(occupancies) == 2 * BURSTS
    clinic.assert_no_overlap(occupancies)
    assert len(await clinic.events("booking.course.booked.v1")) == BURSTS


@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)
async def test_the_database_itself_refuses_two_live_occupancies_of_one_chair(clinic):
    start = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)

    def row(begin: datetime, minutes: int, status: str = "held") -> dict[str, object]:
        return {
            "id": uuid.uuid4(),
            "protocol": "maintenance",
            "family": "mood",
            "sequence": 1,
            "resource_id": "chair-1",
            "start_at": begin,
            "end_at": begin + timedelta(minutes=minutes),
            "first_visit": False,
            "status": status,
            "created_at": start,
            "fee_cents": 0,
            "fee_waived": False,
            "ride_confirmed": False,
        }

    engine = clinic.app.state.infra.engine
    async with engine.begin() as conn:
        await conn.execute(sa.insert(APPOINTMENT), [row(start, 90)])
        # Half-open ranges: one ending exactly when the next starts is no overlap, and a
        # cancelled occupancy frees its chair.
        await conn.execute(sa.insert(APPOINTMENT), [row(start + timedelta(minutes=90), 90)])
        await conn.execute(sa.insert(APPOINTMENT), [row(start, 90, status="cancelled")])
    with pytest.raises(IntegrityError) as refused:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(APPOINTMENT), [row(start + timedelta(minutes=89), 30)])
    assert getattr(refused.value.orig, "sqlstate", None) == "23P01"

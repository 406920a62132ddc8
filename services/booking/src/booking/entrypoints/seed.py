"""The demo clinic's patients, registered through the same handler as the API (idempotent)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from booking.domain.model import RegisteredBy
from booking.service_layer import handlers
from clinic_shared.logging import get_logger
from clinic_shared.runtime import Infrastructure

log = get_logger(__name__)

DEMO_PATIENTS = [
    handlers.RegisterPatient(
        patient_id=UUID("00000000-0000-4000-8000-000000000001"),
        first_name="Demo",
        last_name="Patient One",
        date_of_birth=date(1984, 3, 14),
        email="demo.one@example.org",
        phone="+15035550101",
        registered_by=RegisteredBy.STAFF,
    ),
    handlers.RegisterPatient(
        patient_id=UUID("00000000-0000-4000-8000-000000000002"),
        first_name="Demo",
        last_name="Patient Two",
        date_of_birth=date(1977, 9, 2),
        email="demo.two@example.org",
        phone="+15035550102",
        registered_by=RegisteredBy.STAFF,
    ),
]


async def seed(infra: Infrastructure) -> None:
    created = 0
    for command in DEMO_PATIENTS:
        async with infra.uow_factory() as uow:
            if await handlers.get_patient(command.patient_id, uow) is not None:
                continue
            await handlers.register_patient(command, uow)
            await uow.commit()
            created += 1
    log.info("demo clinic seeded", patients_created=created)

"""The demo clinic: two patients with their intakes, written through the same handlers as the
API (idempotent). Demo Patient One (mood) is cleared and can book an induction course at once;
Demo Patient Two (pain) waits for a clinician's clearance. Chairs, hours and protocols come from
the clinic policy."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from booking.domain.model import Condition, Medication, MedicationClass, RegisteredBy
from booking.service_layer import handlers, intake
from booking.service_layer.errors import NotFound
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


NO_FLAGS = {
    "psychosis": False,
    "seizure_disorder": False,
    "aminophylline_use": False,
    "uncontrolled_hypertension": False,
    "unstable_cardiopulmonary_disease": False,
}
DEMO_INTAKES = [
    (
        intake.SubmitIntake(
            patient_id=DEMO_PATIENTS[0].patient_id,
            condition=Condition.MOOD,
            screening=NO_FLAGS,
            medications=[Medication("lorazepam", MedicationClass.BENZODIAZEPINE)],
            diagnosis_codes=["F33.2"],
            treating_clinician="Demo Psychiatrist, MD",
        ),
        True,
    ),
    (
        intake.SubmitIntake(
            patient_id=DEMO_PATIENTS[1].patient_id,
            condition=Condition.PAIN,
            screening=NO_FLAGS,
            medications=[],
            diagnosis_codes=["G90.512"],
            treating_clinician="Demo Pain Specialist, MD",
        ),
        False,
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
    for submitted, cleared in DEMO_INTAKES:
        async with infra.uow_factory() as uow:
            try:
                await intake.get_intake(submitted.patient_id, uow)
                continue
            except NotFound:
                pass
            await intake.submit_intake(submitted, uow)
            if cleared:
                clearance = intake.ClearIntake(
                    submitted.patient_id, True, None, clinician_id="demo-clinician"
                )
                await intake.clear_intake(clearance, uow)
            await uow.commit()
    log.info("demo clinic seeded", patients_created=created)

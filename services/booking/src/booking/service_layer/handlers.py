"""Booking's command handlers: plain async functions taking a command and a unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

from booking.adapters.repository import DuplicatePatient, PatientRepository
from booking.domain.model import Patient, RegisteredBy
from booking.service_layer.integration import publish_domain_events
from clinic_shared.uow import SqlUnitOfWork


class PatientAlreadyExists(Exception):
    pass


@dataclass(frozen=True)
class RegisterPatient:
    patient_id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    registered_by: RegisteredBy


async def register_patient(cmd: RegisterPatient, uow: SqlUnitOfWork) -> Patient:
    """Create the patient and its `patient registered` event in the caller's transaction."""
    patients = PatientRepository(uow.session)
    if await patients.exists(cmd.patient_id):
        raise PatientAlreadyExists(str(cmd.patient_id))
    patient = Patient.register(
        patient_id=cmd.patient_id,
        first_name=cmd.first_name,
        last_name=cmd.last_name,
        date_of_birth=cmd.date_of_birth,
        email=cmd.email,
        phone=cmd.phone,
        registered_by=cmd.registered_by,
        now=uow.clock.now(),
    )
    try:
        await patients.add(patient)
    except DuplicatePatient as exc:  # a concurrent registration of the same id won
        raise PatientAlreadyExists(str(cmd.patient_id)) from exc
    await publish_domain_events(uow, patient.events)
    return patient


async def get_patient(patient_id: UUID, uow: SqlUnitOfWork) -> Patient | None:
    return await PatientRepository(uow.session).get(patient_id)

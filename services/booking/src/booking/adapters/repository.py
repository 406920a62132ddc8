"""Patient repository over SQL: statements, not identity-map round trips."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from booking.adapters.orm import PatientRow
from booking.domain.model import Patient, RegisteredBy

PATIENT = PatientRow.__table__


class DuplicatePatient(Exception):
    """A patient with this id was stored first, possibly by a concurrent request."""


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, patient: Patient) -> None:
        try:
            await self._insert(patient)
        except IntegrityError as exc:
            raise DuplicatePatient(str(patient.id)) from exc

    async def _insert(self, patient: Patient) -> None:
        await self._session.execute(
            sa.insert(PATIENT).values(
                id=patient.id,
                first_name=patient.first_name,
                last_name=patient.last_name,
                date_of_birth=patient.date_of_birth,
                email=patient.email,
                phone=patient.phone,
                registered_at=patient.registered_at,
                registered_by=patient.registered_by.value,
            )
        )

    async def get(self, patient_id: UUID) -> Patient | None:
        row = (
            (await self._session.execute(sa.select(PATIENT).where(PATIENT.c.id == patient_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        fields = dict(row)
        return Patient(**fields | {"registered_by": RegisteredBy(fields["registered_by"])})

    async def exists(self, patient_id: UUID) -> bool:
        found = await self._session.execute(
            sa.select(PATIENT.c.id).where(PATIENT.c.id == patient_id)
        )
        return found.first() is not None

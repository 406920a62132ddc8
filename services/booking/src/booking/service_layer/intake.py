"""Intake handlers: screening answers, medications, condition, and a clinician's clearance."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from booking.adapters.repository import AuditLog, IntakeRepository, PatientRepository
from booking.domain.model import Condition, Intake, IntakeError, Medication
from booking.service_layer.errors import Conflict, NotFound
from booking.service_layer.integration import publish_domain_events
from clinic_shared.uow import SqlUnitOfWork


@dataclass(frozen=True)
class SubmitIntake:
    patient_id: UUID
    condition: Condition | None
    screening: dict[str, bool]
    medications: list[Medication]
    diagnosis_codes: list[str]
    treating_clinician: str | None


@dataclass(frozen=True)
class ClearIntake:
    patient_id: UUID
    diagnosis_confirmed: bool
    override_reason: str | None
    clinician_id: str


async def _require_patient(uow: SqlUnitOfWork, patient_id: UUID) -> None:
    if not await PatientRepository(uow.session).exists(patient_id):
        raise NotFound("patient")


async def submit_intake(cmd: SubmitIntake, uow: SqlUnitOfWork) -> Intake:
    """Record the answers; any earlier clearance is withdrawn until a clinician looks again."""
    await _require_patient(uow, cmd.patient_id)
    intake = Intake.submit(
        patient_id=cmd.patient_id,
        condition=cmd.condition,
        screening=cmd.screening,
        medications=cmd.medications,
        diagnosis_codes=cmd.diagnosis_codes,
        treating_clinician=cmd.treating_clinician,
        now=uow.clock.now(),
    )
    await IntakeRepository(uow.session).save(intake)
    return intake


async def clear_intake(cmd: ClearIntake, uow: SqlUnitOfWork) -> Intake:
    await _require_patient(uow, cmd.patient_id)
    intakes = IntakeRepository(uow.session)
    intake = await intakes.get(cmd.patient_id, for_update=uow.is_postgres)
    if intake is None:
        raise Conflict("intake_missing", "The patient has not answered the screening yet.")
    if intake.is_cleared:
        return intake
    now = uow.clock.now()
    try:
        overridden = intake.clear(
            blocking=uow.policy.booking.screening_blocking_flags,
            diagnosis_confirmed=cmd.diagnosis_confirmed,
            override_reason=cmd.override_reason,
            clinician_id=cmd.clinician_id,
            now=now,
        )
    except IntakeError as exc:
        raise Conflict(exc.code, exc.detail) from exc
    await intakes.save(intake)
    if overridden:
        await AuditLog(uow.session).record(
            at=now,
            actor_role="clinician",
            actor_id=cmd.clinician_id,
            action="clearance_override",
            subject_id=cmd.patient_id,
            reason=f"{intake.override_reason} (overrode: {', '.join(overridden)})",
        )
    await publish_domain_events(uow, intake.events)
    return intake


async def get_intake(patient_id: UUID, uow: SqlUnitOfWork) -> Intake:
    intake = await IntakeRepository(uow.session).get(patient_id)
    if intake is None:
        raise NotFound("intake")
    return intake

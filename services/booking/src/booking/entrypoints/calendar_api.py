"""Booking's calendar routes: protocols, availability, courses, appointments and holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from booking.adapters.repository import is_overlap_refusal
from booking.domain.model import Actor, Appointment, AppointmentStatus, Course, Hold, HoldStatus
from booking.entrypoints import schemas
from booking.service_layer import calendar, holds
from clinic_shared.auth import STAFF_ROLES, Principal, Role, ensure_patient_access, require_roles
from clinic_shared.http import DateTimeText
from clinic_shared.idempotency import run_idempotent
from clinic_shared.problems import ProblemError
from clinic_shared.refusals import answered as refusals_answered
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory

SELF_OR_STAFF = require_roles(Role.PATIENT, *STAFF_ROLES)
SELF_OR_SCHEDULER = require_roles(Role.PATIENT, Role.SCHEDULER, Role.ADMIN)
FLOOR_STAFF = require_roles(Role.SCHEDULER, Role.CLINICIAN, Role.ADMIN)
FEE_STAFF = require_roles(Role.SCHEDULER, Role.BILLING, Role.ADMIN)
SCHEDULERS = require_roles(Role.SCHEDULER, Role.ADMIN)


@contextmanager
def answered() -> Iterator[None]:
    """Service-layer refusals become problem responses; a lost race for a chair is a 409."""
    try:
        with refusals_answered():
            yield
    except DBAPIError as exc:
        if is_overlap_refusal(exc):
            raise ProblemError(
                409, "slot_taken", "Conflict", "A requested slot was just taken."
            ) from exc
        raise


NOT_IN_THIS_STATE: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not possible in the appointment's state"}
}
"""The answer of a state change (check-in, complete, ...) the appointment cannot make now."""


def restriction(principal: Principal) -> UUID | None:
    """The patient a patient's token limits every query to; None for staff."""
    if principal.role is not Role.PATIENT:
        return None
    try:
        return UUID(principal.subject)
    except ValueError as exc:
        raise ProblemError(403, "forbidden", "Not allowed", "The token names no patient.") from exc


def requester(principal: Principal) -> calendar.Requester:
    return calendar.Requester(
        actor=Actor.PATIENT if principal.role is Role.PATIENT else Actor.STAFF,
        role=principal.role.value,
        subject=principal.subject,
        restrict_to=restriction(principal),
    )


def staff_waiver(principal: Principal, reason: str | None) -> str | None:
    if reason is not None and principal.role is Role.PATIENT:
        raise ProblemError(403, "forbidden", "Not allowed", "Only staff may waive a fee.")
    return reason


def appointment_out(appointment: Appointment) -> dict[str, Any]:
    return schemas.AppointmentOut(
        id=appointment.id,
        course_id=appointment.course_id,
        patient_id=appointment.patient_id,
        protocol=appointment.protocol,
        family=appointment.family,
        sequence=appointment.sequence,
        chair_id=appointment.resource_id,
        start=appointment.start,
        end=appointment.end,
        first_visit=appointment.first_visit,
        status=appointment.status.value,
        cancelled_at=appointment.cancelled_at,
        cancel_timing=appointment.cancel_timing.value if appointment.cancel_timing else None,
        fee_cents=appointment.fee_cents,
        fee_waived=appointment.fee_waived,
        checked_in_at=appointment.checked_in_at,
        completed_at=appointment.completed_at,
        ride_confirmed=appointment.ride_confirmed,
    ).model_dump(mode="json")


def course_out(course: Course, appointments: list[Appointment]) -> dict[str, Any]:
    return {
        "id": str(course.id),
        "patient_id": str(course.patient_id),
        "protocol": course.protocol,
        "family": course.family,
        "booked_at": course.booked_at.isoformat(),
        "booked_by": course.booked_by.value,
        "hold_id": str(course.hold_id) if course.hold_id else None,
        "offer_id": str(course.offer_id) if course.offer_id else None,
        "appointments": [appointment_out(a) for a in appointments],
    }


def hold_out(hold: Hold, slots: list[Appointment]) -> dict[str, Any]:
    return schemas.HoldOut(
        id=hold.id,
        source_course_id=hold.source_course_id,
        protocol=hold.protocol,
        family=hold.family,
        kind=hold.kind.value,
        status=hold.status.value,
        placed_at=hold.placed_at,
        released_at=hold.released_at,
        slots=[schemas.AppointmentOut.model_validate(appointment_out(s)) for s in slots],
    ).model_dump(mode="json")


def calendar_routes(uow_factory: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter()

    async def read(handler: Any, *args: Any) -> Any:
        with answered():
            async with uow_factory() as uow:
                return await handler(*args, uow)

    async def change(handler: Any, command: Any) -> Any:
        with answered():
            async with uow_factory() as uow:
                result = await handler(command, uow)
                await uow.commit()
                return result

    def whose(principal: Principal, patient_id: UUID | None) -> UUID | None:
        """A patient's query is about themself; naming another patient answers 404."""
        mine = restriction(principal)
        if mine is None:
            return patient_id
        ensure_patient_access(principal, patient_id or mine)
        return patient_id or mine

    def window(
        start: datetime | None, end: datetime | None
    ) -> tuple[datetime | None, datetime | None]:
        zone = uow_factory.policy.clinic.tz
        with answered():
            return (
                calendar.parse_local_start(start, zone) if start else None,
                calendar.parse_local_start(end, zone) if end else None,
            )

    @router.get("/v1/protocols", tags=["calendar"])
    async def protocols(principal: Annotated[Principal, Depends(SELF_OR_STAFF)]) -> dict[str, Any]:
        policy = uow_factory.policy
        return {
            "zone": policy.clinic.zone,
            "first_visit_minutes": policy.booking.first_visit_minutes,
            "protocols": [
                {"name": name} | protocol.model_dump(mode="json")
                for name, protocol in policy.booking.protocols.items()
            ],
        }

    @router.get(
        "/v1/availability",
        response_model=schemas.AvailabilityOut,
        tags=["calendar"],
        responses={
            404: {"description": "No such patient, or not the caller"},
            409: {"description": "The patient's intake is not cleared"},
        },
    )
    async def availability(
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
        protocol: Annotated[str, Query(min_length=1, max_length=32)],
        patient_id: UUID | None = None,
        from_: Annotated[DateTimeText | None, Query(alias="from")] = None,
        to: DateTimeText | None = None,
        limit: Annotated[int | None, Query(ge=1, le=500)] = None,
    ) -> dict[str, Any]:
        patient_id = whose(principal, patient_id)
        window_from, window_to = window(from_, to)
        query = calendar.SearchAvailability(protocol, patient_id, window_from, window_to, limit)
        found = await read(calendar.search_availability, query)
        return {
            "protocol": protocol,
            "first_visit": found.first_visit,
            "options": [
                {
                    "slots": [
                        {
                            "start": s.start.isoformat(),
                            "end": s.end.isoformat(),
                            "chair_id": s.resource_id,
                        }
                        for s in option.slots
                    ]
                }
                for option in found.options
            ],
        }

    @router.post(
        "/v1/courses",
        status_code=201,
        response_model=schemas.CourseOut,
        tags=["calendar"],
        responses={
            404: {"description": "No such patient, or not the caller"},
            409: {"description": "Slot taken, course rule or intake gate not met"},
        },
    )
    async def book_course(
        body: schemas.CourseIn,
        request: Request,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> JSONResponse:
        ensure_patient_access(principal, body.patient_id)
        command = calendar.BookCourse(
            patient_id=body.patient_id,
            protocol=body.protocol,
            slots=[(slot.start, slot.chair_id) for slot in body.slots],
            booked_by=Actor.PATIENT if principal.role is Role.PATIENT else Actor.STAFF,
        )

        async def action(uow: SqlUnitOfWork) -> tuple[int, dict[str, Any]]:
            with answered():
                booked = await calendar.book_course(command, uow)
            return 201, course_out(booked.course, booked.appointments)

        with answered():
            return await run_idempotent(
                request, uow_factory, principal, body.model_dump(mode="json"), action
            )

    @router.get("/v1/courses/{course_id}", response_model=schemas.CourseOut, tags=["calendar"])
    async def get_course(
        course_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> dict[str, Any]:
        course, appointments = await read(calendar.get_course, course_id, restriction(principal))
        return course_out(course, appointments)

    @router.get(
        "/v1/appointments",
        response_model=schemas.AppointmentListOut,
        tags=["calendar"],
        responses={404: {"description": "Another patient's id, asked by a patient"}},
    )
    async def list_appointments(
        principal: Annotated[Principal, Depends(SELF_OR_STAFF)],
        patient_id: UUID | None = None,
        from_: Annotated[DateTimeText | None, Query(alias="from")] = None,
        to: DateTimeText | None = None,
        status: AppointmentStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        patient_id = whose(principal, patient_id)
        start_from, start_to = window(from_, to)
        query = calendar.ListAppointments(patient_id, start_from, start_to, status, limit)
        appointments = await read(calendar.list_appointments, query)
        return {"appointments": [appointment_out(a) for a in appointments]}

    @router.get(
        "/v1/appointments/{appointment_id}",
        response_model=schemas.AppointmentOut,
        tags=["calendar"],
    )
    async def get_appointment(
        appointment_id: UUID, principal: Annotated[Principal, Depends(SELF_OR_STAFF)]
    ) -> dict[str, Any]:
        appointment = await read(calendar.get_appointment, appointment_id, restriction(principal))
        return appointment_out(appointment)

    @router.post(
        "/v1/appointments/{appointment_id}/cancel",
        response_model=schemas.CancelOut,
        tags=["calendar"],
        responses={409: {"description": "Late without acknowledgement, or not cancellable"}},
    )
    async def cancel(
        appointment_id: UUID,
        body: schemas.CancelIn,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> dict[str, Any]:
        command = calendar.CancelAppointment(
            appointment_id=appointment_id,
            reason=body.reason,
            fees=calendar.FeeDecision(
                body.acknowledge_late_fee, staff_waiver(principal, body.waive_fee_reason)
            ),
            requester=requester(principal),
        )
        result = await change(calendar.cancel_appointment, command)
        appointment = result.appointment
        return {
            "status": appointment.status.value,
            "timing": result.terms.timing.value,
            "fee_cents": appointment.fee_cents,
            "fee_waived": appointment.fee_waived,
            "hours_before": result.terms.hours_before,
            "released_appointment_ids": [str(a.id) for a in result.released],
            "hold_id": str(result.hold.id) if result.hold else None,
            "held_appointment_ids": [str(a.id) for a in result.held],
        }

    @router.post(
        "/v1/appointments/{appointment_id}/reschedule",
        response_model=schemas.RescheduleOut,
        tags=["calendar"],
        responses={409: {"description": "Not movable now, slot taken, or late unacknowledged"}},
    )
    async def reschedule(
        appointment_id: UUID,
        body: schemas.RescheduleIn,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> dict[str, Any]:
        command = calendar.RescheduleAppointment(
            appointment_id=appointment_id,
            start=body.start,
            resource_id=body.chair_id,
            fees=calendar.FeeDecision(
                body.acknowledge_late_fee, staff_waiver(principal, body.waive_fee_reason)
            ),
            requester=requester(principal),
        )
        result = await change(calendar.reschedule_appointment, command)
        return appointment_out(result.appointment) | {
            "timing": result.terms.timing.value,
            "change_fee_cents": result.fee_cents,
        }

    @router.post(
        "/v1/appointments/{appointment_id}/check-in",
        response_model=schemas.AppointmentOut,
        tags=["day of treatment"],
        responses=NOT_IN_THIS_STATE,
    )
    async def check_in(
        appointment_id: UUID, principal: Annotated[Principal, Depends(FLOOR_STAFF)]
    ) -> dict[str, Any]:
        command = calendar.ChangeAppointment(appointment_id, requester(principal))
        return appointment_out(await change(calendar.check_in, command))

    @router.post(
        "/v1/appointments/{appointment_id}/complete",
        response_model=schemas.AppointmentOut,
        tags=["day of treatment"],
        responses=NOT_IN_THIS_STATE,
    )
    async def complete(
        appointment_id: UUID,
        principal: Annotated[Principal, Depends(FLOOR_STAFF)],
        body: schemas.CompleteIn | None = None,
    ) -> dict[str, Any]:
        command = calendar.CompleteAppointment(
            appointment_id, requester(principal), body.infusion_minutes if body else None
        )
        appointment, _ordinal = await change(calendar.complete, command)
        return appointment_out(appointment)

    @router.post(
        "/v1/appointments/{appointment_id}/no-show",
        response_model=schemas.AppointmentOut,
        tags=["day of treatment"],
        responses=NOT_IN_THIS_STATE,
    )
    async def no_show(
        appointment_id: UUID,
        principal: Annotated[Principal, Depends(FLOOR_STAFF)],
        body: schemas.NoShowIn | None = None,
    ) -> dict[str, Any]:
        command = calendar.MarkNoShow(
            appointment_id, requester(principal), body.waive_fee_reason if body else None
        )
        return appointment_out(await change(calendar.mark_no_show, command))

    @router.post(
        "/v1/appointments/{appointment_id}/waive-fee",
        response_model=schemas.AppointmentOut,
        tags=["day of treatment"],
        responses=NOT_IN_THIS_STATE,
    )
    async def waive_fee(
        appointment_id: UUID,
        body: schemas.WaiveIn,
        principal: Annotated[Principal, Depends(FEE_STAFF)],
    ) -> dict[str, Any]:
        command = calendar.WaiveFee(appointment_id, requester(principal), body.reason)
        return appointment_out(await change(calendar.waive_fee, command))

    @router.post(
        "/v1/appointments/{appointment_id}/ride",
        response_model=schemas.AppointmentOut,
        tags=["day of treatment"],
        responses=NOT_IN_THIS_STATE,
    )
    async def ride(
        appointment_id: UUID,
        body: schemas.RideIn,
        principal: Annotated[Principal, Depends(SELF_OR_SCHEDULER)],
    ) -> dict[str, Any]:
        command = calendar.ConfirmRide(
            appointment_id,
            requester(principal),
            body.confirmed,
            body.driver_name,
            body.driver_phone,
        )
        return appointment_out(await change(calendar.confirm_ride, command))

    @router.get("/v1/holds", response_model=schemas.HoldListOut, tags=["holds"])
    async def list_holds(
        principal: Annotated[Principal, Depends(SCHEDULERS)],
        status: HoldStatus | None = None,
    ) -> dict[str, Any]:
        found = await read(holds.list_holds, status)
        return {"holds": [hold_out(hold, slots) for hold, slots in found]}

    @router.post(
        "/v1/holds/{hold_id}/release",
        response_model=schemas.HoldOut,
        tags=["holds"],
        responses={409: {"description": "The hold is not awaiting review"}},
    )
    async def confirm_release(
        hold_id: UUID, principal: Annotated[Principal, Depends(SCHEDULERS)]
    ) -> dict[str, Any]:
        """Under `series_release: scheduler_review`: hand a held series to the waitlist."""
        hold, slots = await change(holds.confirm_release, hold_id)
        return hold_out(hold, slots)

    return router

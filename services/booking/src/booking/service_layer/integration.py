"""The one place booking's domain events become integration events (ids and facts only).

No name, contact detail, screening answer, medication, diagnosis, cancellation reason or driver
detail crosses this line: only ids, protocols, times, timings and amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from booking.domain import model
from clinic_shared.contracts import booking as contracts
from clinic_shared.envelope import IntegrationEvent
from clinic_shared.uow import SqlUnitOfWork


def _slot(appointment: model.Appointment) -> contracts.SlotFact:
    return contracts.SlotFact(
        appointment_id=appointment.id,
        resource_id=appointment.resource_id,
        start=appointment.start,
        end=appointment.end,
    )


def _owned(appointment: model.Appointment) -> dict[str, Any]:
    """The ids every event about a patient's appointment carries."""
    if appointment.course_id is None or appointment.patient_id is None:
        raise ValueError(f"appointment {appointment.id} belongs to no patient's course")
    return {
        "appointment_id": appointment.id,
        "course_id": appointment.course_id,
        "patient_id": appointment.patient_id,
    }


@singledispatch
def to_integration(event: object) -> list[IntegrationEvent]:
    raise TypeError(f"no integration event for {type(event).__name__}")


@to_integration.register
def _(event: model.PatientRegistered) -> list[IntegrationEvent]:
    return [
        contracts.PatientRegistered(
            patient_id=event.patient_id,
            registered_at=event.registered_at,
            registered_by=event.registered_by.value,
        )
    ]


@to_integration.register
def _(event: model.IntakeCleared) -> list[IntegrationEvent]:
    return [contracts.IntakeCleared(patient_id=event.patient_id, cleared_at=event.cleared_at)]


@to_integration.register
def _(event: model.CourseBooked) -> list[IntegrationEvent]:
    course = event.course
    booked: list[IntegrationEvent] = [
        contracts.CourseBooked(
            course_id=course.id,
            patient_id=course.patient_id,
            protocol=course.protocol,
            family=course.family,
            slots=[_slot(a) for a in event.appointments],
            booked_at=course.booked_at,
            booked_by=course.booked_by.value,
            hold_id=course.hold_id,
            offer_id=course.offer_id,
        )
    ]
    for appointment in event.appointments:
        booked.append(
            contracts.AppointmentBooked(
                **_owned(appointment),
                protocol=appointment.protocol,
                family=appointment.family,
                sequence=appointment.sequence,
                resource_id=appointment.resource_id,
                start=appointment.start,
                end=appointment.end,
                first_visit=appointment.first_visit,
            )
        )
    return booked


@to_integration.register
def _(event: model.AppointmentCancelled) -> list[IntegrationEvent]:
    appointment = event.appointment
    assert appointment.cancelled_at is not None and appointment.cancel_timing is not None
    assert appointment.cancelled_by is not None
    return [
        contracts.AppointmentCancelled(
            **_owned(appointment),
            start=appointment.start,
            cancelled_at=appointment.cancelled_at,
            cancelled_by=appointment.cancelled_by.value,
            timing=appointment.cancel_timing.value,
            seconds_before_start=event.seconds_before,
            fee_cents=appointment.fee_cents,
            fee_waived=appointment.fee_waived,
            reason="series_released" if event.series_released else "cancelled",
        )
    ]


@to_integration.register
def _(event: model.AppointmentRescheduled) -> list[IntegrationEvent]:
    appointment = event.appointment
    return [
        contracts.AppointmentRescheduled(
            **_owned(appointment),
            previous_start=event.previous_start,
            start=appointment.start,
            end=appointment.end,
            resource_id=appointment.resource_id,
            timing=event.terms.timing.value,
            fee_cents=event.fee_cents,
            fee_waived=event.fee_waived,
            rescheduled_at=event.at,
            rescheduled_by=event.by.value,
        )
    ]


@to_integration.register
def _(event: model.HoldPlaced) -> list[IntegrationEvent]:
    hold = event.hold
    return [
        contracts.HoldPlaced(
            hold_id=hold.id,
            source_course_id=hold.source_course_id,
            slots=[_slot(a) for a in event.slots],
            placed_at=hold.placed_at,
            awaiting_review=hold.status is model.HoldStatus.AWAITING_REVIEW,
        )
    ]


@to_integration.register
def _(event: model.BlockReleased) -> list[IntegrationEvent]:
    hold = event.hold
    assert hold.released_at is not None
    return [
        contracts.BlockReleased(
            hold_id=hold.id,
            source_course_id=hold.source_course_id,
            protocol=hold.protocol,
            family=hold.family,
            kind=hold.kind.value,
            slots=[_slot(a) for a in event.slots],
            released_at=hold.released_at,
        )
    ]


@to_integration.register
def _(event: model.HoldReleased) -> list[IntegrationEvent]:
    return [
        contracts.HoldReleased(
            hold_id=event.hold_id,
            appointment_ids=list(event.appointment_ids),
            released_at=event.at,
            reason=event.reason,
        )
    ]


@to_integration.register
def _(event: model.HoldBooked) -> list[IntegrationEvent]:
    return [
        contracts.HoldBooked(
            hold_id=event.hold_id,
            offer_id=event.offer_id,
            patient_id=event.course.patient_id,
            course_id=event.course.id,
            appointment_ids=list(event.appointment_ids),
            booked_at=event.course.booked_at,
        )
    ]


@to_integration.register
def _(event: model.HoldBookingRejected) -> list[IntegrationEvent]:
    return [
        contracts.HoldBookingRejected(
            hold_id=event.hold_id,
            offer_id=event.offer_id,
            patient_id=event.patient_id,
            reason=event.reason,
            rejected_at=event.at,
        )
    ]


@to_integration.register
def _(event: model.AppointmentCheckedIn) -> list[IntegrationEvent]:
    appointment = event.appointment
    assert appointment.checked_in_at is not None
    return [
        contracts.AppointmentCheckedIn(
            **_owned(appointment), checked_in_at=appointment.checked_in_at
        )
    ]


@to_integration.register
def _(event: model.AppointmentCompleted) -> list[IntegrationEvent]:
    appointment = event.appointment
    assert appointment.completed_at is not None
    if event.ordinal is None:
        return [
            contracts.ConsultCompleted(
                **_owned(appointment),
                protocol=appointment.protocol,
                start=appointment.start,
                completed_at=appointment.completed_at,
            )
        ]
    return [
        contracts.InfusionCompleted(
            **_owned(appointment),
            protocol=appointment.protocol,
            family=appointment.family,
            ordinal=event.ordinal,
            start=appointment.start,
            completed_at=appointment.completed_at,
            infusion_minutes=appointment.infusion_minutes or 0,
        )
    ]


@to_integration.register
def _(event: model.AppointmentNoShow) -> list[IntegrationEvent]:
    appointment = event.appointment
    return [
        contracts.AppointmentNoShow(
            **_owned(appointment),
            start=appointment.start,
            marked_at=event.at,
            fee_cents=appointment.fee_cents,
            fee_waived=appointment.fee_waived,
        )
    ]


@to_integration.register
def _(event: model.FeeWaived) -> list[IntegrationEvent]:
    return [
        contracts.FeeWaived(
            **_owned(event.appointment), fee_kind=event.fee_kind, waived_at=event.at
        )
    ]


@to_integration.register
def _(event: model.RideConfirmed) -> list[IntegrationEvent]:
    appointment = event.appointment
    assert appointment.ride_confirmed_at is not None
    return [
        contracts.RideConfirmed(
            **_owned(appointment),
            confirmed=appointment.ride_confirmed,
            confirmed_at=appointment.ride_confirmed_at,
        )
    ]


async def publish_domain_events(uow: SqlUnitOfWork, events: Sequence[object]) -> None:
    """The integration events of `events`, in order, to the outbox in one statement."""
    await uow.publish_all([published for event in events for published in to_integration(event)])

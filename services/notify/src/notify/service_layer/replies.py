"""Texts patients send back: a YES to the ride-home reminder confirms the ride in booking.

The webhook only records the reply (its provider id makes a redelivered webhook a no-op) and
what it means; the `RideReplies` due-queue job tells booking, again later if booking is away.
The reply's words are not kept: only `yes`, `stop` or `other`. The sender's number is matched
by its keyed digest against the ride-home texts sent to it, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from uuid import UUID

from clinic_shared.logging import get_logger
from clinic_shared.problems import ProblemError
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory
from notify.domain.model import AppointmentStatus, Channel, Kind
from notify.domain.ports import PatientDirectory
from notify.service_layer.delivery import recipient_digest
from notify.service_layer.scheduling import preferences_of, repository, set_preferences

log = get_logger(__name__)

YES = frozenset({"yes", "y", "yes.", "yes!", "yep", "confirm", "confirmed"})
STOP = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
RETRY_AFTER = timedelta(minutes=1)
MAX_RETRY_AFTER = timedelta(minutes=30)
RIDE_STILL_NEEDED = (AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN)
MATCHED = frozenset({"pending", "applied", "refused"})
"""A YES recorded with one of these statuses was answered as matched (`pending` at first)."""


def meaning_of(body: str) -> str:
    word = " ".join(body.lower().split())
    if word in YES:
        return "yes"
    if word in STOP:
        return "stop"
    return "other"


@dataclass(frozen=True)
class ReplyOutcome:
    meaning: str
    matched: bool
    duplicate: bool


async def record_reply(
    provider_ref: str, sender: str, body: str, digest_key: bytes, uow: SqlUnitOfWork
) -> ReplyOutcome:
    """Record an inbound text once; a YES to a ride-home text is queued for booking."""
    repo = repository(uow)
    now = uow.clock.now()
    digest = recipient_digest(digest_key, sender)
    meaning = meaning_of(body)
    earlier = await repo.reply(provider_ref)
    if earlier is not None:
        return ReplyOutcome(earlier["meaning"], earlier["status"] in MATCHED, True)
    answered = await repo.last_text_to(digest, Kind.RIDE_HOME)
    appointment = None
    if answered is not None and answered.subject_id is not None:
        appointment = await repo.appointment(answered.subject_id)
    upcoming = (
        appointment is not None
        and appointment.status in RIDE_STILL_NEEDED
        and appointment.end > now
    )
    status = "ignored"
    if meaning == "yes":
        status = "pending" if upcoming else "unmatched"
    if meaning == "stop":
        status = await _stop_texts(digest, uow)
    await repo.add_reply(
        {
            "provider_ref": provider_ref,
            "sender_digest": digest,
            "meaning": meaning,
            "message_id": answered.id if answered is not None else None,
            "appointment_id": appointment.id if appointment is not None else None,
            "patient_id": answered.patient_id if answered is not None else None,
            "status": status,
            "due_at": now,
            "received_at": now,
        }
    )
    return ReplyOutcome(meaning, status == "pending", False)


async def _stop_texts(digest: str, uow: SqlUnitOfWork) -> str:
    """STOP: the patient whose number it is gets no more texts (they can turn them on again)."""
    repo = repository(uow)
    texted = await repo.last_text_to_any(digest)
    if texted is None:
        return "unmatched"
    current = await preferences_of(uow, texted)
    channels = current.channels - {Channel.SMS}
    await set_preferences(replace(current, channels=channels or frozenset({Channel.EMAIL})), uow)
    return "applied"


class RideReplies:
    """Tells booking about each YES: the ride is confirmed on the appointment."""

    name = "ride_replies"

    def __init__(self, directory: PatientDirectory) -> None:
        self.directory = directory

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            reply = await repository(uow).claim_reply(uow.clock.now())
        if reply is None:
            return False
        appointment_id: UUID = reply["appointment_id"]
        patient_id: UUID = reply["patient_id"]
        try:
            confirmed = await self.directory.confirm_ride(appointment_id, patient_id)
        except (ProblemError, OSError) as exc:
            attempts = reply["attempts"] + 1
            wait = min(MAX_RETRY_AFTER, RETRY_AFTER * 2 ** (attempts - 1))
            async with uow_factory() as uow:
                await repository(uow).update_reply(
                    reply["id"], attempts=attempts, due_at=uow.clock.now() + wait
                )
                await uow.commit()
            log.warning("booking unavailable for a ride reply", error=type(exc).__name__)
            return True
        async with uow_factory() as uow:
            await repository(uow).update_reply(
                reply["id"],
                attempts=reply["attempts"] + 1,
                status="applied" if confirmed else "refused",
            )
            await uow.commit()
        return True

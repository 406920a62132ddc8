"""Notify's repository over SQL: messages (the due-queue), the send ledger, preferences, the
appointments notify knows of, and inbound replies.

Claims lock with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of dispatchers can
work the queue; SQLite serializes writers on its own (one dispatcher there)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notify.adapters.orm import (
    AppointmentRow,
    DeliveryRow,
    InboundReplyRow,
    MessageRow,
    PreferenceRow,
)
from notify.domain.model import (
    PENDING,
    AppointmentStatus,
    Channel,
    Kind,
    KnownAppointment,
    Message,
    Preferences,
    Status,
)

MESSAGE = MessageRow.__table__
DELIVERY = DeliveryRow.__table__
PREFERENCE = PreferenceRow.__table__
APPOINTMENT = AppointmentRow.__table__
INBOUND = InboundReplyRow.__table__

MESSAGE_FIELDS = [f.name for f in dataclasses.fields(Message)]
PENDING_VALUES = [s.value for s in PENDING]


def _message(row: Any) -> Message:
    values = {name: row[name] for name in MESSAGE_FIELDS}
    values["kind"] = Kind(values["kind"])
    values["channel"] = Channel(values["channel"])
    values["status"] = Status(values["status"])
    values["facts"] = dict(values["facts"] or {})
    return Message(**values)


def _message_values(message: Message) -> dict[str, Any]:
    values = {name: getattr(message, name) for name in MESSAGE_FIELDS}
    for name in ("kind", "channel", "status"):
        values[name] = values[name].value
    return values


class NotifyRepository:
    def __init__(self, session: AsyncSession, *, postgres: bool) -> None:
        self._session = session
        self._postgres = postgres

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self._postgres else sqlite.insert)(table)

    def _locked(self, statement: sa.Select[Any]) -> sa.Select[Any]:
        if not self._postgres:
            return statement
        return statement.with_for_update(skip_locked=True)

    # messages --------------------------------------------------------------------------------

    async def add_messages(self, messages: Sequence[Message]) -> None:
        """Insert the messages in one statement; one whose dedupe key exists is left out."""
        if messages:
            await self._session.execute(
                self._insert(MESSAGE).on_conflict_do_nothing(index_elements=["dedupe_key"]),
                [_message_values(m) for m in messages],
            )

    async def _one(self, statement: sa.Select[Any]) -> Message | None:
        row = (await self._session.execute(statement)).mappings().first()
        return None if row is None else _message(row)

    async def save(self, message: Message) -> None:
        values = _message_values(message)
        del values["id"]
        await self._session.execute(
            sa.update(MESSAGE).where(MESSAGE.c.id == message.id).values(values)
        )

    async def get(self, message_id: UUID) -> Message | None:
        return await self._one(sa.select(MESSAGE).where(MESSAGE.c.id == message_id))

    async def by_key(self, dedupe_key: str) -> Message | None:
        return await self._one(sa.select(MESSAGE).where(MESSAGE.c.dedupe_key == dedupe_key))

    async def for_patient(self, patient_id: UUID, limit: int = 500) -> list[Message]:
        rows = (
            await self._session.execute(
                sa.select(MESSAGE)
                .where(MESSAGE.c.patient_id == patient_id)
                .order_by(MESSAGE.c.due_at, MESSAGE.c.kind, MESSAGE.c.step, MESSAGE.c.channel)
                .limit(limit)
            )
        ).mappings()
        return [_message(row) for row in rows]

    async def pending(
        self,
        *,
        subject_ids: Sequence[UUID] = (),
        patient_id: UUID | None = None,
        kinds: Sequence[Kind] = (),
    ) -> list[Message]:
        """Messages not yet handed to a provider, locked for the change about to be made."""
        statement = sa.select(MESSAGE).where(MESSAGE.c.status.in_(PENDING_VALUES))
        if subject_ids:
            statement = statement.where(MESSAGE.c.subject_id.in_(list(subject_ids)))
        if patient_id is not None:
            statement = statement.where(MESSAGE.c.patient_id == patient_id)
        if kinds:
            statement = statement.where(MESSAGE.c.kind.in_([k.value for k in kinds]))
        if self._postgres:
            statement = statement.with_for_update()
        rows = (await self._session.execute(statement.order_by(MESSAGE.c.due_at))).mappings()
        return [_message(row) for row in rows]

    async def claim_due(self, now: datetime) -> Message | None:
        """The earliest scheduled message that is due, locked; rows others hold are skipped."""
        statement = (
            sa.select(MESSAGE)
            .where(MESSAGE.c.status == Status.SCHEDULED.value, MESSAGE.c.due_at <= now)
            .order_by(MESSAGE.c.due_at)
            .limit(1)
        )
        return await self._one(self._locked(statement))

    async def claim_stale(self, claimed_before: datetime) -> Message | None:
        """A claimed or sending message whose dispatcher has not finished it in time."""
        statement = (
            sa.select(MESSAGE)
            .where(
                MESSAGE.c.status.in_([Status.CLAIMED.value, Status.SENDING.value]),
                MESSAGE.c.claimed_at < claimed_before,
            )
            .order_by(MESSAGE.c.claimed_at)
            .limit(1)
        )
        return await self._one(self._locked(statement))

    async def start_sending(self, message: Message, token: UUID, now: datetime) -> bool:
        """Move our claim to `sending`; False when the claim is no longer ours (cancelled,
        reaped and taken by another dispatcher)."""
        result = await self._session.execute(
            sa.update(MESSAGE)
            .where(
                MESSAGE.c.id == message.id,
                MESSAGE.c.status == Status.CLAIMED.value,
                MESSAGE.c.claim_token == token,
            )
            .values(status=Status.SENDING.value, attempts=MESSAGE.c.attempts + 1, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # send ledger -----------------------------------------------------------------------------

    async def open_delivery(
        self, message: Message, attempt: int, recipient_digest: str | None, now: datetime
    ) -> UUID:
        delivery_id = uuid.uuid4()
        await self._session.execute(
            sa.insert(DELIVERY).values(
                id=delivery_id,
                message_id=message.id,
                attempt=attempt,
                channel=message.channel.value,
                outcome="sending",
                recipient_digest=recipient_digest,
                started_at=now,
            )
        )
        return delivery_id

    async def close_delivery(
        self,
        message_id: UUID,
        outcome: str,
        now: datetime,
        *,
        provider_ref: str | None = None,
        error: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """Record the outcome of a ledger row: that attempt's, else the message's open one."""
        which = (
            DELIVERY.c.attempt == attempt
            if attempt is not None
            else DELIVERY.c.outcome == "sending"
        )
        await self._session.execute(
            sa.update(DELIVERY)
            .where(DELIVERY.c.message_id == message_id, which)
            .values(outcome=outcome, provider_ref=provider_ref, error=error, finished_at=now)
        )

    async def deliveries(self, message_id: UUID) -> list[dict[str, Any]]:
        rows = await self._session.execute(
            sa.select(DELIVERY)
            .where(DELIVERY.c.message_id == message_id)
            .order_by(DELIVERY.c.attempt)
        )
        return [dict(row) for row in rows.mappings()]

    async def last_text_to(self, digest: str, kind: Kind) -> Message | None:
        """The latest text of this kind accepted for the number with this digest."""
        statement = (
            sa.select(MESSAGE)
            .join(DELIVERY, DELIVERY.c.message_id == MESSAGE.c.id)
            .where(
                DELIVERY.c.recipient_digest == digest,
                DELIVERY.c.outcome == "accepted",
                MESSAGE.c.kind == kind.value,
                MESSAGE.c.channel == Channel.SMS.value,
            )
            .order_by(DELIVERY.c.started_at.desc())
            .limit(1)
        )
        return await self._one(statement)

    async def last_text_to_any(self, digest: str) -> UUID | None:
        """The patient the latest text accepted for the number with this digest went to."""
        statement = (
            sa.select(MESSAGE.c.patient_id)
            .join(DELIVERY, DELIVERY.c.message_id == MESSAGE.c.id)
            .where(DELIVERY.c.recipient_digest == digest, DELIVERY.c.outcome == "accepted")
            .order_by(DELIVERY.c.started_at.desc())
            .limit(1)
        )
        found: UUID | None = (await self._session.execute(statement)).scalar()
        return found

    # preferences -----------------------------------------------------------------------------

    async def preferences(self, patient_id: UUID) -> Preferences | None:
        return (await self.preferences_of_many([patient_id])).get(patient_id)

    async def preferences_of_many(self, patient_ids: Sequence[UUID]) -> dict[UUID, Preferences]:
        """The stored preferences of those patients who have any, in one query."""
        rows = await self._session.execute(
            sa.select(PREFERENCE).where(PREFERENCE.c.patient_id.in_(patient_ids))
        )
        return {
            UUID(str(row["patient_id"])): Preferences(
                patient_id=UUID(str(row["patient_id"])),
                channels=frozenset(Channel(c) for c in row["channels"]),
                quiet_start=row["quiet_start"],
                quiet_end=row["quiet_end"],
                push_device=row["push_device"],
            )
            for row in rows.mappings()
        }

    async def put_preferences(self, preferences: Preferences, now: datetime) -> None:
        values = {
            "channels": sorted(c.value for c in preferences.channels),
            "quiet_start": preferences.quiet_start,
            "quiet_end": preferences.quiet_end,
            "push_device": preferences.push_device,
            "updated_at": now,
        }
        await self._session.execute(
            self._insert(PREFERENCE)
            .values(patient_id=preferences.patient_id, **values)
            .on_conflict_do_update(index_elements=["patient_id"], set_=values)
        )

    # appointments ----------------------------------------------------------------------------

    async def appointment(self, appointment_id: UUID) -> KnownAppointment | None:
        row = (
            (
                await self._session.execute(
                    sa.select(APPOINTMENT).where(APPOINTMENT.c.id == appointment_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _appointment(row)

    async def course_appointments(self, course_id: UUID) -> list[KnownAppointment]:
        rows = await self._session.execute(
            sa.select(APPOINTMENT)
            .where(APPOINTMENT.c.course_id == course_id)
            .order_by(APPOINTMENT.c.start)
        )
        return [_appointment(row) for row in rows.mappings()]

    async def put_appointment(self, appointment: KnownAppointment) -> None:
        values = {
            f.name: getattr(appointment, f.name)
            for f in dataclasses.fields(appointment)
            if f.name != "id"
        }
        values["status"] = appointment.status.value
        await self._session.execute(
            self._insert(APPOINTMENT)
            .values(id=appointment.id, **values)
            .on_conflict_do_update(index_elements=["id"], set_=values)
        )

    # inbound replies -------------------------------------------------------------------------

    async def add_reply(self, values: dict[str, Any]) -> bool:
        """Record a reply; False when the provider delivered this one before."""
        result = await self._session.execute(
            self._insert(INBOUND)
            .values(id=uuid.uuid4(), attempts=0, **values)
            .on_conflict_do_nothing(index_elements=["provider_ref"])
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def claim_reply(self, now: datetime) -> dict[str, Any] | None:
        statement = (
            sa.select(INBOUND)
            .where(INBOUND.c.status == "pending", INBOUND.c.due_at <= now)
            .order_by(INBOUND.c.due_at)
            .limit(1)
        )
        row = (await self._session.execute(self._locked(statement))).mappings().first()
        return None if row is None else dict(row)

    async def update_reply(self, reply_id: UUID, **values: Any) -> None:
        await self._session.execute(
            sa.update(INBOUND).where(INBOUND.c.id == reply_id).values(**values)
        )

    async def reply(self, provider_ref: str) -> dict[str, Any] | None:
        row = (
            (
                await self._session.execute(
                    sa.select(INBOUND).where(INBOUND.c.provider_ref == provider_ref)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else dict(row)


def _appointment(row: Any) -> KnownAppointment:
    return KnownAppointment(
        id=row["id"],
        patient_id=row["patient_id"],
        course_id=row["course_id"],
        family=row["family"],
        protocol=row["protocol"],
        start=row["start"],
        end=row["end"],
        status=AppointmentStatus(row["status"]),
        revision=row["revision"],
    )

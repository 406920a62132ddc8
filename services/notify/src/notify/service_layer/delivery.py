"""Delivery: the dispatcher's due-queue jobs that send each message once.

`Deliveries` takes one due message at a time through four steps, each its own transaction
except the provider call:
1. claim (`FOR UPDATE SKIP LOCKED`): a message whose moment passed is `expired`, one due in
   quiet hours waits for them to end, one on a channel the patient turned off is cancelled;
   otherwise it is `claimed` with a fresh token;
2. outside any transaction: ask booking for the contact details, render the templates;
3. the send ledger: the message goes to `sending` (only if the claim is still ours) and a
   ledger row is written, committed *before* the provider is called;
4. the provider call, then its outcome recorded with a `notify.message.*` event (tried again
   while the database is away, since only this process knows what the provider said).

A dispatcher that dies in step 2 leaves a `claimed` row: the reaper (`StaleClaims`) puts it
back, nothing having been sent. One that dies in step 4 leaves a `sending` row: the provider
may have accepted the message, and SMS and SMTP providers do not deduplicate, so the reaper
marks it `unknown` and it is never sent again. A refusal the provider calls temporary (or a
connection it refused) is tried again with exponential backoff, up to the policy's attempts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from clinic_shared import faults
from clinic_shared.contracts import notify as contracts
from clinic_shared.errors import is_transient
from clinic_shared.logging import get_logger
from clinic_shared.policy import Policy
from clinic_shared.problems import ProblemError
from clinic_shared.uow import SqlUnitOfWork, UnitOfWorkFactory
from notify.adapters.templates import Templates
from notify.domain import schedule
from notify.domain.model import Channel, Message, Preferences, Status, channels_for
from notify.domain.ports import (
    Contact,
    DeliveryDeferred,
    DeliveryRejected,
    Email,
    EmailSender,
    PatientDirectory,
    TextMessage,
    TextSender,
)
from notify.service_layer.compose import compose_email, compose_text
from notify.service_layer.scheduling import (
    clinic_zone,
    preferences_of,
    quiet_windows,
    repository,
)

log = get_logger(__name__)

RECORD_RETRY_FIRST_SECONDS = 0.5
RECORD_RETRY_MAX_SECONDS = 5.0


def recipient_digest(key: bytes, address: str) -> str:
    """A keyed digest of a phone number: lets a reply be matched without keeping the number."""
    normalized = "".join(ch for ch in address if ch.isdigit() or ch == "+")
    return hmac.new(key, normalized.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Channels:
    email: EmailSender
    sms: TextSender
    push: TextSender

    async def close(self) -> None:
        for sender in (self.email, self.sms, self.push):
            await sender.close()


@dataclass(frozen=True)
class _Claim:
    message: Message
    token: UUID
    preferences: Preferences
    policy: Policy


def backoff(policy: Policy, attempts: int) -> timedelta:
    delivery = policy.notify.delivery
    seconds = min(
        delivery.retry_max_seconds, delivery.retry_base_seconds * 2 ** max(attempts - 1, 0)
    )
    return timedelta(seconds=seconds)


class Deliveries:
    """The due-queue of scheduled messages: one provider call per claimed message."""

    name = "messages"

    def __init__(
        self,
        channels: Channels,
        directory: PatientDirectory,
        digest_key: bytes,
        templates: Templates | None = None,
    ) -> None:
        self.channels = channels
        self.directory = directory
        self.digest_key = digest_key
        self.templates = templates or Templates()

    async def close(self) -> None:
        await self.channels.close()
        await self.directory.close()

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            message = await repository(uow).claim_due(uow.clock.now())
            if message is None:
                return False
            claim = await self._claim(message, uow)
            await uow.commit()
        if claim is not None:
            await self._deliver(claim, uow_factory)
        return True

    async def _claim(self, message: Message, uow: SqlUnitOfWork) -> _Claim | None:
        """Claim the message, or settle why it is not to go now."""
        repo = repository(uow)
        now = uow.clock.now()
        preferences = await preferences_of(uow, message.patient_id)
        message.updated_at = now
        if message.send_by is not None and now >= message.send_by:
            message.status = Status.EXPIRED
            await repo.save(message)
            return None
        if message.channel not in channels_for(message.kind, preferences.allowed()):
            message.status, message.last_error = Status.CANCELLED, "channel_turned_off"
            await repo.save(message)
            return None
        allowed = schedule.after_quiet_hours(now, quiet_windows(uow, preferences), clinic_zone(uow))
        if allowed > now:  # quiet hours: never sent inside them
            if message.send_by is not None and allowed >= message.send_by:
                message.status = Status.EXPIRED
            else:
                message.due_at = allowed
            await repo.save(message)
            return None
        token = uuid.uuid4()
        message.status, message.claim_token, message.claimed_at = Status.CLAIMED, token, now
        await repo.save(message)
        return _Claim(message, token, preferences, uow.policy)

    async def _deliver(self, claim: _Claim, uow_factory: UnitOfWorkFactory) -> None:
        message = claim.message
        try:
            contact = await self.directory.contact(message.patient_id)
        except (ProblemError, OSError) as exc:
            log.warning(
                "contact details unavailable", message_id=str(message.id), error=type(exc).__name__
            )
            await self._release(claim, uow_factory)
            return
        if contact is None:
            await self._give_up(claim, uow_factory, "unknown_patient")
            return
        address = self._address(message.channel, contact, claim.preferences)
        if not address:
            await self._give_up(claim, uow_factory, "no_address")
            return
        try:
            now = uow_factory.clock.now()
            outgoing = self._compose(message, claim.policy, contact, address, now)
        except Exception as exc:  # a template or calendar that cannot be made: never will be
            log.error(
                "message cannot be composed", message_id=str(message.id), error=type(exc).__name__
            )
            await self._give_up(claim, uow_factory, "unrenderable")
            return
        async with uow_factory() as uow:
            if not await repository(uow).start_sending(message, claim.token, uow.clock.now()):
                return  # cancelled meanwhile, or reaped and taken by another dispatcher
            attempt = message.attempts + 1
            digest = (
                recipient_digest(self.digest_key, address)
                if message.channel is Channel.SMS
                else None
            )
            await repository(uow).open_delivery(message, attempt, digest, uow.clock.now())
            await uow.commit()
        outcome, provider_ref, error = await self._call_provider(message.channel, outgoing)
        if outcome == "accepted":
            await faults.reach(faults.NOTIFY_AFTER_PROVIDER_ACCEPT)
        await self._record_outcome(claim, attempt, outcome, provider_ref, error, uow_factory)

    @staticmethod
    def _address(channel: Channel, contact: Contact, preferences: Preferences) -> str | None:
        if channel is Channel.EMAIL:
            return contact.email
        if channel is Channel.SMS:
            return contact.phone
        return preferences.push_device

    def _compose(
        self, message: Message, policy: Policy, contact: Contact, address: str, now: datetime
    ) -> Email | TextMessage:
        if message.channel is Channel.EMAIL:
            return compose_email(message, policy, contact, address, self.templates, now)
        return compose_text(message, policy, address, self.templates)

    async def _call_provider(
        self, channel: Channel, outgoing: Email | TextMessage
    ) -> tuple[str, str | None, str | None]:
        """(outcome, provider reference, error code)."""
        try:
            if isinstance(outgoing, Email):
                reference = await self.channels.email.send(outgoing)
            else:
                sender = self.channels.sms if channel is Channel.SMS else self.channels.push
                reference = await sender.send(outgoing)
        except DeliveryDeferred as exc:
            return "deferred", None, _code(exc)
        except DeliveryRejected as exc:
            return "rejected", None, _code(exc)
        except Exception as exc:  # cut off mid-call: the provider may have it
            log.error("provider call cut off", channel=channel.value, error=type(exc).__name__)
            return "unknown", None, "cut_off"
        return "accepted", reference, None

    async def _record_outcome(
        self,
        claim: _Claim,
        attempt: int,
        outcome: str,
        provider_ref: str | None,
        error: str | None,
        uow_factory: UnitOfWorkFactory,
    ) -> None:
        """Write down what the provider answered. Only this process knows it, so a database
        away for a moment must not turn an accepted message into `unknown`: a transient
        failure is tried again until the reaper would settle the message anyway."""
        give_up_at = time.monotonic() + claim.policy.notify.delivery.claim_timeout_seconds
        delay = RECORD_RETRY_FIRST_SECONDS
        while True:
            try:
                await self._record(claim, attempt, outcome, provider_ref, error, uow_factory)
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay >= give_up_at:
                    raise
                log.warning(
                    "send outcome not recorded yet",
                    message_id=str(claim.message.id),
                    error=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, RECORD_RETRY_MAX_SECONDS)

    async def _record(
        self,
        claim: _Claim,
        attempt: int,
        outcome: str,
        provider_ref: str | None,
        error: str | None,
        uow_factory: UnitOfWorkFactory,
    ) -> None:
        async with uow_factory() as uow:
            repo = repository(uow)
            now = uow.clock.now()
            message = await repo.get(claim.message.id)
            if message is None:
                return
            await repo.close_delivery(
                message.id, outcome, now, provider_ref=provider_ref, error=error, attempt=attempt
            )
            if message.claim_token != claim.token or message.status is not Status.SENDING:
                # the reaper settled it as `unknown` while the call dragged on: the ledger keeps
                # what the provider said, and the message is never tried again
                log.warning("late provider answer", message_id=str(message.id), outcome=outcome)
                await uow.commit()
                return
            message.updated_at = now
            if outcome == "accepted":
                message.status, message.sent_at, message.provider_ref = (
                    Status.SENT,
                    now,
                    provider_ref,
                )
                await uow.publish(
                    contracts.MessageSent(
                        patient_id=message.patient_id,
                        message_id=message.id,
                        channel=message.channel.value,
                        attempt=attempt,
                        sent_at=now,
                    )
                )
            elif outcome == "deferred" and attempt < claim.policy.notify.delivery.max_attempts:
                message.status, message.last_error = Status.SCHEDULED, error
                message.claim_token = message.claimed_at = None
                message.due_at = now + backoff(claim.policy, attempt)
            else:
                status = Status.UNKNOWN if outcome == "unknown" else Status.FAILED
                reason = {"deferred": "out_of_attempts", "unknown": "cut_off"}.get(
                    outcome, "rejected"
                )
                message.status, message.last_error = status, reason
                await publish_failure(uow, message, status, reason, now)
            await repo.save(message)
            await uow.commit()

    async def _release(self, claim: _Claim, uow_factory: UnitOfWorkFactory) -> None:
        """Nothing was sent: back to the queue, a little later."""

        async def release(message: Message, now: datetime, uow: SqlUnitOfWork) -> None:
            message.status, message.claim_token, message.claimed_at = Status.SCHEDULED, None, None
            message.due_at = now + backoff(claim.policy, 1)
            message.last_error = "contact_unavailable"

        await self._settle(claim, uow_factory, release)

    async def _give_up(self, claim: _Claim, uow_factory: UnitOfWorkFactory, reason: str) -> None:
        """Nothing was sent, and nothing ever will be."""

        async def give_up(message: Message, now: datetime, uow: SqlUnitOfWork) -> None:
            message.status, message.last_error = Status.FAILED, reason
            await publish_failure(uow, message, Status.FAILED, reason, now)

        await self._settle(claim, uow_factory, give_up)

    @staticmethod
    async def _settle(
        claim: _Claim,
        uow_factory: UnitOfWorkFactory,
        change: Callable[[Message, datetime, SqlUnitOfWork], Awaitable[None]],
    ) -> None:
        """Apply `change` to the claimed message, if the claim is still ours."""
        async with uow_factory() as uow:
            repo = repository(uow)
            message = await repo.get(claim.message.id)
            if message is None or message.claim_token != claim.token:
                return
            now = uow.clock.now()
            await change(message, now, uow)
            message.updated_at = now
            await repo.save(message)
            await uow.commit()


def _code(exc: Exception) -> str:
    return (type(exc).__name__ if not exc.args else str(exc.args[0]))[:64]


async def publish_failure(
    uow: SqlUnitOfWork, message: Message, status: Status, reason: str, now: datetime
) -> None:
    await uow.publish(
        contracts.MessageFailed(
            patient_id=message.patient_id,
            message_id=message.id,
            channel=message.channel.value,
            outcome="unknown" if status is Status.UNKNOWN else "failed",
            reason=reason,
            failed_at=now,
        )
    )


class StaleClaims:
    """The reaper: claims whose dispatcher did not finish in time."""

    name = "stale_claims"

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        async with uow_factory() as uow:
            repo = repository(uow)
            now = uow.clock.now()
            timeout = timedelta(seconds=uow.policy.notify.delivery.claim_timeout_seconds)
            message = await repo.claim_stale(now - timeout)
            if message is None:
                return False
            message.updated_at = now
            if message.status is Status.CLAIMED:  # nothing went to a provider: try again
                message.status, message.claim_token, message.claimed_at = (
                    Status.SCHEDULED,
                    None,
                    None,
                )
                log.info("stale claim released", message_id=str(message.id))
            else:  # the provider may have it: never sent twice
                message.status, message.last_error = Status.UNKNOWN, "cut_off"
                await repo.close_delivery(message.id, "unknown", now, error="cut_off")
                await publish_failure(uow, message, Status.UNKNOWN, "cut_off", now)
                log.warning("send outcome unknown", message_id=str(message.id))
            await repo.save(message)
            await uow.commit()
            return True

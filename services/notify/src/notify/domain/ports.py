"""What notify needs from the outside world, as ports the service layer depends on.

Channels (email, SMS, push) share one contract. A provider call ends in one of three ways, and
the dispatcher treats them differently, because providers do not deduplicate:
- it returns the provider's reference: the message was accepted, exactly once;
- it raises `DeliveryDeferred` or `DeliveryRejected`: the provider certainly did not accept it
  (refused the connection, or answered with a temporary or permanent refusal), so trying again
  later cannot send it twice;
- it raises anything else (a connection lost mid-message, a timeout): the outcome is unknown,
  and the message is never sent again on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID


class DeliveryDeferred(Exception):
    """Not accepted, for now (connection refused, a 4xx answer): safe to try again later."""


class DeliveryRejected(Exception):
    """Not accepted, ever (a bad address, a 5xx answer): trying again will not help."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    """The full media type, e.g. `text/calendar; method=REQUEST; charset=utf-8`."""
    data: bytes


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    reference: str
    """Our message id: the `Message-ID` header's local part, and the sinks' file name."""
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class TextMessage:
    """An SMS or a push notification."""

    to: str
    """An E.164 phone number (SMS) or a device token (push)."""
    body: str
    reference: str
    title: str = ""
    """Push only: the notification's title."""


class EmailSender(Protocol):
    async def send(self, email: Email) -> str:
        """The provider's reference for the accepted message."""
        ...

    async def close(self) -> None: ...


class TextSender(Protocol):
    """SMS and push: one contract, one adapter per provider."""

    async def send(self, message: TextMessage) -> str:
        """The provider's reference for the accepted message."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Contact:
    """What booking tells notify about a patient, asked for when needed and never stored."""

    first_name: str
    email: str | None
    phone: str | None
    medication_classes: frozenset[str] = field(default_factory=frozenset)


class PatientDirectory(Protocol):
    """Booking's internal API."""

    async def contact(self, patient_id: UUID) -> Contact | None:
        """None when booking does not know the patient."""
        ...

    async def confirm_ride(self, appointment_id: UUID, patient_id: UUID) -> bool:
        """Booking marks the ride confirmed; False when the appointment is gone or not theirs."""
        ...

    async def close(self) -> None: ...

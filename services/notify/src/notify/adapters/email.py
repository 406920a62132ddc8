"""Email out through an SMTP relay (aiosmtplib), or into a directory of `.eml` files.

The relay does not deduplicate, so how a send fails decides whether the dispatcher may try
again. One SMTP connection per email, in two phases:

- opening the session (TCP connect, greeting, EHLO, STARTTLS, AUTH): nothing has been sent, so
  any failure, refused connection, timeout or refusal included, is `DeliveryDeferred`;
- the transaction (MAIL, RCPT, DATA): a 4xx answer is `DeliveryDeferred`, a 5xx answer (sender,
  recipient or message refused) is `DeliveryRejected`; the server answered, so it did not take
  the message. Anything else here (the connection lost or a timeout mid-transaction, while the
  message is on the wire or its answer is awaited) propagates as it is: the outcome is unknown.

An address that cannot be written on an SMTP line is `DeliveryRejected` before connecting. A
failed QUIT after the server accepted the message is ignored: the message was sent.

The returned reference is the `Message-ID` we set, `<{reference}@{message_id_domain}>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from email.headerregistry import ContentTypeHeader
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from aiosmtplib.email import parse_address

from notify.domain.ports import DeliveryDeferred, DeliveryRejected, Email

MESSAGE_ID_DOMAIN = "notify.clinic.invalid"
# a reference becomes a Message-ID local part and a file name: keep it to characters safe in both
_REFERENCE = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]*")


def build_message(email: Email, from_address: str, message_id_domain: str) -> EmailMessage:
    """The RFC 5322 message for `email`; `ValueError` when it cannot be addressed."""
    if not _REFERENCE.fullmatch(email.reference):
        raise ValueError(f"unusable email reference {email.reference!r}")
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = email.to
    if len(message["To"].addresses) != 1 or message["To"].defects:
        raise ValueError(f"not a single email address: {email.to!r}")
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{email.reference}@{message_id_domain}>"
    message.set_content(email.text)
    for attachment in email.attachments:
        content_type = _content_type(attachment.content_type)
        message.add_attachment(
            attachment.data,
            maintype=content_type.maintype,
            subtype=content_type.subtype,
            filename=attachment.filename,
            params=dict(content_type.params),
        )
    return message


def _content_type(value: str) -> ContentTypeHeader:
    holder = EmailMessage()
    holder["Content-Type"] = value
    header = holder["Content-Type"]
    if header.defects or not isinstance(header, ContentTypeHeader):
        raise ValueError(f"not a media type: {value!r}")
    return header


class SmtpEmailSender:
    def __init__(
        self,
        host: str,
        port: int,
        from_address: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 30.0,
        message_id_domain: str = MESSAGE_ID_DOMAIN,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("starttls and use_tls are exclusive: STARTTLS upgrades plain SMTP")
        self._host = host
        self._port = port
        self._from = from_address
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        self._timeout = timeout
        self._message_id_domain = message_id_domain

    async def send(self, email: Email) -> str:
        try:
            parse_address(email.to)
            message = build_message(email, self._from, self._message_id_domain)
        except ValueError as exc:
            raise DeliveryRejected(f"cannot address the email: {exc}") from exc
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        try:
            try:
                await smtp.connect()
                if smtp.is_ehlo_or_helo_needed:
                    # in this phase, so that a failure here is still a plain deferral
                    try:
                        await smtp.ehlo()
                    except aiosmtplib.SMTPHeloError:
                        await smtp.helo()
            except (OSError, aiosmtplib.SMTPException) as exc:
                raise DeliveryDeferred(f"SMTP relay unavailable: {exc!r}") from exc
            try:
                await smtp.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                raise _refusal(min(r.code for r in exc.recipients), exc) from exc
            except aiosmtplib.SMTPResponseException as exc:
                if not 400 <= exc.code < 600:
                    raise
                raise _refusal(exc.code, exc) from exc
            except aiosmtplib.SMTPNotSupported as exc:
                # checked before MAIL: an address the relay cannot carry (no SMTPUTF8)
                raise DeliveryRejected(f"SMTP relay cannot carry the email: {exc}") from exc
            with contextlib.suppress(OSError, aiosmtplib.SMTPException):
                await smtp.quit()
        finally:
            smtp.close()
        return str(message["Message-ID"])

    async def close(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""


def _refusal(code: int, exc: Exception) -> DeliveryDeferred | DeliveryRejected:
    if 400 <= code < 500:
        return DeliveryDeferred(f"SMTP relay answered {code}: {exc}")
    return DeliveryRejected(f"SMTP relay answered {code}: {exc}")


class FileEmailSink:
    """Each email as `<reference>.eml` in a directory: the one-machine stand-in for a relay."""

    def __init__(self, directory: Path, from_address: str) -> None:
        self._directory = directory
        self._from = from_address

    async def send(self, email: Email) -> str:
        try:
            message = build_message(email, self._from, MESSAGE_ID_DOMAIN)
        except ValueError as exc:
            raise DeliveryRejected(f"cannot address the email: {exc}") from exc
        data = message.as_bytes(policy=SMTP_POLICY)
        await asyncio.to_thread(self._write, f"{email.reference}.eml", data)
        return email.reference

    def _write(self, name: str, data: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._directory / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    async def close(self) -> None:
        """Nothing to release."""

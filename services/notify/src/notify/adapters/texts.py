"""SMS through Twilio's Messages API (the official SDK's async path), or into a JSON-lines file.

Twilio does not deduplicate a message create, so the failure decides whether the dispatcher
may try again:
- a 400 answer (an invalid or non-mobile `To`, code 21211 or 21614; an unsubscribed number,
  21610) is `DeliveryRejected`: Twilio refused the message and will refuse it again;
- a 429 answer is `DeliveryDeferred`: Twilio refused it for now;
- a connection that could not be opened (`aiohttp.ClientConnectorError`: DNS, refused, TLS
  handshake) is `DeliveryDeferred`: the request never left;
- anything else (a 5xx, a lost connection, a timeout) propagates: the outcome is unknown.

The SDK's aiohttp client sends every request without any timeout of its own, so a send is
bounded here by `timeout` (an expiry propagates as `TimeoutError`, outcome unknown). Its aiohttp
session must be created inside the running event loop, so the default client is made on the
first send.

Twilio signs its status callbacks with the account's auth token: `verify_twilio_signature`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientConnectorError
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import AsyncHttpClient
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from notify.domain.ports import DeliveryDeferred, DeliveryRejected, TextMessage


class TwilioSmsSender:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        status_callback: str | None = None,
        http_client: AsyncHttpClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from = from_number
        self._status_callback = status_callback
        self._http = http_client
        self._timeout = timeout
        self._client: Any = None

    def _twilio(self) -> Any:
        if self._client is None:
            if self._http is None:
                self._http = AsyncTwilioHttpClient()
            self._client = Client(
                username=self._account_sid,
                password=self._auth_token,
                account_sid=self._account_sid,
                http_client=self._http,
            )
        return self._client

    async def send(self, message: TextMessage) -> str:
        extra: dict[str, str] = {}
        if self._status_callback is not None:
            extra["status_callback"] = self._status_callback
        try:
            async with asyncio.timeout(self._timeout):
                created = await self._twilio().messages.create_async(
                    to=message.to, from_=self._from, body=message.body, **extra
                )
        except (TwilioRestException, TwilioServiceException) as exc:
            if exc.status == 400:
                raise DeliveryRejected(f"Twilio refused the SMS: {exc.code}") from exc
            if exc.status == 429:
                raise DeliveryDeferred(f"Twilio is rate limiting: {exc.code}") from exc
            raise
        except ClientConnectorError as exc:
            raise DeliveryDeferred(f"cannot reach Twilio: {exc!r}") from exc
        return str(created.sid)

    async def close(self) -> None:
        close = getattr(self._http, "close", None)
        if close is not None:
            await close()


class FileTextSink:
    """One JSON line per message, for SMS and push on one machine."""

    def __init__(self, path: Path, channel: str) -> None:
        self._path = path
        self._channel = channel
        self._lock = asyncio.Lock()

    async def send(self, message: TextMessage) -> str:
        line = json.dumps(
            {
                "reference": message.reference,
                "channel": self._channel,
                "to": message.to,
                "title": message.title,
                "body": message.body,
                "at": datetime.now(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        async with self._lock:
            await asyncio.to_thread(self._append, (line + "\n").encode())
        return f"file-{message.reference}"

    def _append(self, data: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Nothing to release."""


def verify_twilio_signature(
    url: str, params: Mapping[str, str], signature: str | None, auth_token: str
) -> bool:
    """Whether `X-Twilio-Signature` signs this URL and these form fields; False when missing."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def sign_twilio_request(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The `X-Twilio-Signature` Twilio would send: for tests and the local tools."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))

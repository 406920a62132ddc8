"""The processor's webhook signature (Stripe's scheme): `Stripe-Signature: t=<unix>,v1=<hex>`,
where v1 is HMAC-SHA256 of `<t>.<raw body>` under the endpoint's signing secret. A signature
older (or newer) than the tolerance is refused, so a captured webhook cannot be replayed."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime


class SignatureRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    payload: bytes, header: str | None, secret: str, now: datetime, tolerance_seconds: int
) -> None:
    if not header:
        raise SignatureRejected("signature_missing", "The webhook carries no signature.")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureRejected("signature_malformed", "The webhook signature cannot be read.")
    expected = sign(payload, secret, timestamp).rsplit("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureRejected("signature_invalid", "The webhook signature does not match.")
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureRejected("signature_stale", "The webhook was signed too long ago.")

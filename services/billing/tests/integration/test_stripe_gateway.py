"""StripeGateway against stripe-mock, with a recording proxy in between to see the wire.

stripe-mock checks every request against Stripe's OpenAPI spec but answers fixed fixtures: a
confirmed PaymentIntent always comes back `requires_payment_method` and declines cannot be
provoked. So the proxy also plays Stripe's decisions (a succeeded status, a 402 decline, a 500),
while every request it forwards is still validated by stripe-mock.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from billing.adapters.stripe_gateway import StripeGateway, payment_result_from_card_error
from billing.domain.ports import CardRejected, GatewayUnavailable

API_KEY = "sk_test_123"
TOKEN = "pm_card_visa"
CUSTOMER = "cus_saved"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body, keep_blank_values=True))


class RecordingProxy:
    """Forwards to stripe-mock and records each request; can answer or amend the next one."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._answers: list[tuple[int, dict[str, Any]]] = []
        self._amendments: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer_next(self, status: int, body: dict[str, Any]) -> None:
        """The next request gets this answer and never reaches stripe-mock."""
        with self._lock:
            self._answers.append((status, body))

    def amend_next(self, fields: dict[str, Any]) -> None:
        """The next successful answer from stripe-mock gets these fields overwritten."""
        with self._lock:
            self._amendments.append(fields)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body.decode()))
            if self._answers:
                status, answer = self._answers.pop(0)
                return status, json.dumps(answer).encode()
        status, payload = self._forward(method, path, headers, body)
        with self._lock:
            if status == 200 and self._amendments:
                payload = json.dumps({**json.loads(payload), **self._amendments.pop(0)}).encode()
        return status, payload

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        skip = {"host", "connection", "accept-encoding", "content-length"}
        connection = http.client.HTTPConnection(*self._upstream, timeout=10)
        try:
            connection.request(
                method, path, body, {k: v for k, v in headers.items() if k not in skip}
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(proxy: RecordingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = proxy.handle(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _relay

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def proxy(stripe_mock_url: str) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(stripe_mock_url)
    yield recording
    recording.close()


@pytest.fixture
async def gateway(stripe_mock_url: str) -> AsyncIterator[StripeGateway]:
    adapter = StripeGateway(API_KEY, base_url=stripe_mock_url)
    yield adapter
    await adapter.close()


@pytest.fixture
async def proxied_gateway(proxy: RecordingProxy) -> AsyncIterator[StripeGateway]:
    adapter = StripeGateway(API_KEY, base_url=proxy.url)
    yield adapter
    await adapter.close()


def _card_error(code: str, decline_code: str | None, payment_intent: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "card_error", "code": code, "message": "Stripe's own words"}
    if decline_code is not None:
        error["decline_code"] = decline_code
    if payment_intent is not None:
        error["payment_intent"] = {"id": payment_intent, "object": "payment_intent"}
    return {"error": error}


async def _charge(adapter: StripeGateway, key: str = "charge-key-1", **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "amount_cents": 45000,
        "currency": "usd",
        "customer_id": CUSTOMER,
        "payment_method_id": TOKEN,
        "idempotency_key": key,
        "charge_id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        **overrides,
    }
    return await adapter.charge(**arguments)


# --------------------------------------------------------------------------- save_card


async def test_saving_a_card_creates_a_customer_and_returns_the_cards_brand_and_last4(
    gateway: StripeGateway,
) -> None:
    saved = await gateway.save_card(patient_id=uuid.uuid4(), token=TOKEN, customer_id=None)

    assert saved.customer_id.startswith("cus_")
    assert saved.payment_method_id == TOKEN
    assert (saved.brand, saved.last4) == ("visa", "4242")
    assert saved.exp_month is not None and saved.exp_year is not None


async def test_the_new_customer_knows_only_the_patient_id_under_a_key_per_patient(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    patient_id = uuid.uuid4()

    saved = await proxied_gateway.save_card(patient_id=patient_id, token=TOKEN, customer_id=None)

    [create] = proxy.requests_to("POST", "/v1/customers")
    assert create.form == {"metadata[patient_id]": str(patient_id)}
    assert create.headers["idempotency-key"] == f"customer-{patient_id}"
    [attach] = proxy.requests_to("POST", f"/v1/payment_methods/{TOKEN}/attach")
    assert attach.form == {"customer": saved.customer_id}


async def test_saving_a_card_for_a_known_customer_creates_no_customer(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    saved = await proxied_gateway.save_card(
        patient_id=uuid.uuid4(), token=TOKEN, customer_id=CUSTOMER
    )

    assert saved.customer_id == CUSTOMER
    assert proxy.requests_to("POST", "/v1/customers") == []
    [attach] = proxy.requests_to("POST", f"/v1/payment_methods/{TOKEN}/attach")
    assert attach.form == {"customer": CUSTOMER}


async def test_a_token_stripe_does_not_know_is_a_rejected_card(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    proxy.answer_next(
        400,
        {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "payment_method",
                "message": "No such PaymentMethod: 'pm_gone'",
            }
        },
    )

    with pytest.raises(CardRejected) as rejected:
        await proxied_gateway.save_card(
            patient_id=uuid.uuid4(), token="pm_gone", customer_id=CUSTOMER
        )

    assert rejected.value.code == "resource_missing"


# --------------------------------------------------------------------------- charge


async def test_a_charge_goes_off_session_confirmed_with_the_charge_id_and_nothing_else(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    charge_id = uuid.uuid4()
    proxy.amend_next({"status": "succeeded"})

    result = await _charge(proxied_gateway, key="charge-abc", charge_id=charge_id)

    assert result.succeeded
    assert result.payment_id.startswith("pi_")
    [request] = proxy.requests_to("POST", "/v1/payment_intents")
    assert request.headers["idempotency-key"] == "charge-abc"
    assert request.form == {
        "amount": "45000",
        "currency": "usd",
        "customer": CUSTOMER,
        "payment_method": TOKEN,
        "off_session": "true",
        "confirm": "true",
        "description": "Clinic services",
        "metadata[charge_id]": str(charge_id),
    }
    assert "ketamine" not in request.body.lower()


async def test_a_charge_retried_after_a_server_error_carries_the_same_idempotency_key(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    proxy.answer_next(500, {"error": {"type": "api_error", "message": "Something went wrong"}})

    with pytest.raises(GatewayUnavailable):
        await _charge(proxied_gateway, key="charge-retry")
    retried = await _charge(proxied_gateway, key="charge-retry")

    assert retried.payment_id.startswith("pi_")
    first, second = proxy.requests_to("POST", "/v1/payment_intents")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "charge-retry"
    assert first.form == second.form


async def test_a_decline_is_a_failed_result_that_keeps_the_payment_intent_id(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    proxy.answer_next(402, _card_error("card_declined", "insufficient_funds", "pi_declined"))

    result = await _charge(proxied_gateway)

    assert not result.succeeded
    assert (result.payment_id, result.failure_code) == ("pi_declined", "insufficient_funds")
    assert result.failure_message == "The card has insufficient funds."


async def test_a_payment_waiting_for_the_cardholder_fails_as_authentication_required(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    proxy.amend_next({"status": "requires_action"})

    result = await _charge(proxied_gateway)

    assert not result.succeeded
    assert result.payment_id.startswith("pi_")
    assert result.failure_code == "authentication_required"


async def test_an_unreachable_stripe_leaves_the_charge_outcome_unknown() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    adapter = StripeGateway(API_KEY, base_url=f"http://127.0.0.1:{closed_port}", timeout=2.0)
    try:
        with pytest.raises(GatewayUnavailable):
            await _charge(adapter)
    finally:
        await adapter.close()


@pytest.mark.parametrize(
    ("code", "decline_code", "failure_code", "failure_message"),
    [
        ("card_declined", "insufficient_funds", "insufficient_funds", "insufficient funds"),
        ("card_declined", "generic_decline", "card_declined", "declined"),
        ("expired_card", "expired_card", "expired_card", "expired"),
        ("expired_card", None, "expired_card", "expired"),
    ],
)
def test_a_card_error_maps_to_a_declined_payment(
    code: str, decline_code: str | None, failure_code: str, failure_message: str
) -> None:
    error = stripe.CardError(
        "Stripe's own words",
        None,
        code,
        http_status=402,
        json_body=_card_error(code, decline_code, "pi_declined"),
    )

    result = payment_result_from_card_error(error)

    assert not result.succeeded
    assert (result.payment_id, result.failure_code) == ("pi_declined", failure_code)
    assert failure_message in (result.failure_message or "")
    assert "Stripe" not in (result.failure_message or "")


def test_a_card_error_without_a_payment_intent_has_no_payment_id() -> None:
    error = stripe.CardError(
        "declined", None, "card_declined", json_body=_card_error("card_declined", None, None)
    )

    result = payment_result_from_card_error(error)

    assert (result.payment_id, result.failure_code) == (None, "card_declined")


# --------------------------------------------------------------------------- refund


async def test_a_refund_returns_stripes_refund_id(gateway: StripeGateway) -> None:
    result = await gateway.refund(
        payment_id="pi_paid", amount_cents=15000, idempotency_key="refund-1", refund_id=uuid.uuid4()
    )

    assert result.succeeded
    assert result.refund_id is not None and result.refund_id.startswith("re_")


async def test_a_refund_names_the_payment_and_our_refund_under_the_given_key(
    proxied_gateway: StripeGateway, proxy: RecordingProxy
) -> None:
    refund_id = uuid.uuid4()

    await proxied_gateway.refund(
        payment_id="pi_paid", amount_cents=15000, idempotency_key="refund-7", refund_id=refund_id
    )

    [request] = proxy.requests_to("POST", "/v1/refunds")
    assert request.headers["idempotency-key"] == "refund-7"
    assert request.form == {
        "payment_intent": "pi_paid",
        "amount": "15000",
        "metadata[refund_id]": str(refund_id),
    }

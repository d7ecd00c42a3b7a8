"""A real local IPN receiver (stdlib HTTP server in a thread) and IPN test data."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks
import svix.webhooks

from ipn import services as ipn_services
from ipn.models import IpnEndpoint
from messaging.models import Message
from tests import factories


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    # Seconds the receiver waits before answering (a slow or hung receiver).
    delay: float = 0.0
    # Stream this many extra bytes of body (a receiver that never stops talking).
    stream_bytes: int = 0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    # What each verifier said when the request arrived (None: it accepted).
    standardwebhooks_error: str | None = None
    svix_error: str | None = None
    # time.monotonic() at arrival.
    at: float = field(default_factory=time.monotonic)

    @property
    def verified(self) -> bool:
        return self.standardwebhooks_error is None and self.svix_error is None


class Receiver:
    """Records every request; answers with queued replies, then the default one. When it
    knows the secret it verifies each request on arrival with two independent libraries."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.secret: str | None = None
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                reply = receiver.replies.popleft() if receiver.replies else receiver.default
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body) + reply.stream_bytes))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    chunk = b"x" * 65536
                    for _ in range(reply.stream_bytes // len(chunk)):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ipn"

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        got = Received(path, headers, body)
        if self.secret:
            got.standardwebhooks_error = _verify(standardwebhooks.Webhook(self.secret), body, headers)
            got.svix_error = _verify(svix.webhooks.Webhook(self.secret), body, headers)
        with self._changed:
            self.requests.append(got)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Waits (with a deadline) until at least `count` requests arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            return list(self.requests)


def _verify(verifier, body: bytes, headers: dict[str, str]) -> str | None:
    try:
        if isinstance(verifier, svix.webhooks.Webhook):
            verifier.verify(body, dict(headers))
        else:
            verifier.verify(body, dict(headers), json_parse=False)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def make_receiver():
    """Starts receivers on demand (one per account in multi-account tests); stops them all."""
    started: list[Receiver] = []

    def start() -> Receiver:
        server = Receiver()
        server.thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def receiver():
    """One running receiver (self-contained: other test packages import this fixture)."""
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def private_ok(settings):
    """Callbacks may go to 127.0.0.1 (the operator's `IPN_ALLOW_PRIVATE_NETWORKS=true`)."""
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    return settings


@pytest.fixture
def endpoint(alice, receiver, private_ok) -> IpnEndpoint:
    """Alice's IPN, enabled, pointing at the local receiver, which knows the secret."""
    found = ipn_services.update_endpoint(account=alice, url=receiver.url, enabled=True)
    receiver.secret = found.secret
    return found


def make_device(*, phone_list, name: str = "Pixel 7", phone_number: str = ""):
    device, _token = factories.make_enrolled_device(phone_list=phone_list, name=name)
    if phone_number:
        device.phone_number = phone_number
        device.save(update_fields=["phone_number"])
    return device


def make_message(*, account, phone_list, status: str = Message.Status.SENT, **fields) -> Message:
    """A message of the account's list, sent unless `status` says otherwise; no credit taken
    (the IPN tests look at its events, not at credit)."""
    assert phone_list.account_id == account.pk
    return factories.make_message(phone_list=phone_list, status=status, cost=0, **fields)

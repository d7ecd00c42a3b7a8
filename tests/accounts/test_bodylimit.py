"""accounts.lib.bodylimit: 413 before a body over the limit is read (ASGI and WSGI; Daphne
and gunicorn for real in tests/test_body_limits_live.py)."""

from __future__ import annotations

import io
import json

import pytest

from accounts.lib.bodylimit import BodyLimitASGI, BodyLimits, BodyLimitWSGI, declared_length

LIMITS = BodyLimits(default=100, refusal=lambda limit: json.dumps({"limit": limit}).encode(), larger={"/bulk": 1000})


def test_the_larger_limit_is_for_its_path_and_a_declared_size_only():
    assert LIMITS.limit("/bulk", declared=True) == 1000
    assert LIMITS.limit("/bulk", declared=False) == 100
    assert LIMITS.limit("/send", declared=True) == 100
    assert [declared_length(v) for v in ("12", b" 7 ", None, "", "-1", "1e3", "9" * 30)] == [12, 7] + [None] * 5


# --- ASGI -----------------------------------------------------------------------------


class Recorder:
    """An ASGI application that reads the whole body, then answers 200."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.disconnected = False

    async def __call__(self, scope, receive, send):
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def run_asgi(path: str, chunks: list[bytes], *, declared: int | None = None):
    app = Recorder()
    headers = [(b"content-length", str(declared).encode())] if declared is not None else []
    scope = {"type": "http", "path": path, "headers": headers}
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await BodyLimitASGI(app, LIMITS)(scope, receive, send)
    return app, sent, pending


async def test_asgi_a_declared_size_over_the_limit_is_refused_before_the_application_runs():
    app, sent, pending = await run_asgi("/send", [b"x" * 50] * 10, declared=500)
    assert not app.called
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"limit": 100}
    assert len(pending) == 10  # not one chunk was read


async def test_asgi_a_streamed_body_is_cut_at_the_first_chunk_over_the_limit():
    app, sent, pending = await run_asgi("/send", [b"x" * 60] * 10)
    assert app.disconnected and app.body == b"x" * 60
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] and sent[0]["status"] == 413
    assert len(pending) == 8


@pytest.mark.parametrize(("path", "declared"), [("/send", 90), ("/bulk", 900), ("/send", None)])
async def test_asgi_a_body_within_its_limit_reaches_the_application(path, declared):
    size = declared or 90
    app, sent, _pending = await run_asgi(path, [b"x" * (size // 3)] * 3, declared=declared)
    assert app.body == b"x" * size and sent[0]["status"] == 200


async def test_asgi_the_larger_limit_needs_a_declared_size():
    _app, sent, _pending = await run_asgi("/bulk", [b"x" * 90] * 3)
    assert sent[0]["status"] == 413


# --- WSGI -----------------------------------------------------------------------------


class Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the body was read")


def run_wsgi(environ: dict):
    seen: dict = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [])
        return [b"ok"]

    status: list[str] = []
    headers: list = []

    def start_response(line, response_headers):
        status.append(line)
        headers.extend(response_headers)

    body = b"".join(BodyLimitWSGI(app, LIMITS)({"PATH_INFO": "/send", **environ}, start_response))
    return status[0], headers, body, seen


def test_wsgi_a_declared_size_over_the_limit_is_refused_without_reading():
    status, headers, body, seen = run_wsgi({"CONTENT_LENGTH": "60000000", "wsgi.input": Unreadable()})
    assert status.startswith("413") and json.loads(body) == {"limit": 100} and not seen
    assert ("connection", "close") not in headers  # hop-by-hop: not a WSGI application's to send


def test_wsgi_a_chunked_body_is_read_up_to_the_limit_and_handed_on_with_its_length():
    chunked = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    status, _headers, _body, seen = run_wsgi({**chunked, "wsgi.input": io.BytesIO(b"x" * 101)})
    assert status.startswith("413") and not seen
    status, _headers, _body, seen = run_wsgi({**chunked, "wsgi.input": io.BytesIO(b"x" * 100)})
    assert status.startswith("200") and seen["body"] == b"x" * 100


def test_wsgi_the_bulk_path_takes_its_larger_declared_limit():
    status, _headers, _body, seen = run_wsgi(
        {"PATH_INFO": "/bulk", "CONTENT_LENGTH": "900", "wsgi.input": io.BytesIO(b"x" * 900)}
    )
    assert status.startswith("200") and len(seen["body"]) == 900

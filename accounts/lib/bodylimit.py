"""Request bodies over the size limit are refused with 413 before anyone reads them. Django-free.

Django bounds a form's fields (`DATA_UPLOAD_MAX_MEMORY_SIZE`) but not an upload or a JSON
body, and by the time a view runs the server has read the body anyway: a 60 MB multipart
POST with no key at all was read in full before its 401. So the limit is applied where
the bytes arrive, by the size declared in `Content-Length` and by the bytes actually
received (a chunked body has no declared size):

- `BodyLimitASGI` wraps the ASGI application: a declared size over the limit is answered
  before the application starts; a streamed body is counted chunk by chunk, and at the
  first byte over the limit the client gets 413 and the application a disconnect.
- `BodyLimitWSGI` wraps the WSGI application (gunicorn): a declared size over the limit
  is answered without reading `wsgi.input`; a chunked body is read into a spooled file
  (memory up to 1 MB, then disk) up to the limit.
- `bound_daphne_requests` applies the limit inside Daphne itself, which reads a whole
  body (into a file) and queues all of it for the application before the application
  runs: its request class refuses at the headers when the declared size is too large,
  and at the first chunk over the limit otherwise, then discards the rest.

One route may have a larger limit (`BodyLimits.larger`: the bulk upload), for a body
that declares its size; its view then checks the key before it reads the body.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

SPOOL_IN_MEMORY = 1024 * 1024
# After a refusal Daphne reads and drops what the client still sends for at most this long,
# so that the client reads the 413 rather than a reset connection (nginx's lingering close).
LINGER_SECONDS = 5.0


@dataclass(frozen=True)
class BodyLimits:
    """The largest body accepted (`default`), and larger ones for exact paths whose body
    declares its size; `refusal(limit)` is the 413 answer's body (JSON)."""

    default: int
    refusal: Callable[[int], bytes]
    larger: dict[str, int] = field(default_factory=dict)

    def limit(self, path: str, *, declared: bool) -> int:
        """The limit of a request to `path`; the larger limits apply to a declared size only."""
        return self.larger.get(path, self.default) if declared else self.default

    def refusal_headers(self, body: bytes, *, close: bool = True) -> list[tuple[bytes, bytes]]:
        """The 413's headers; `close` adds `Connection: close` (not for WSGI: a hop-by-hop header)."""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        return [*headers, (b"connection", b"close")] if close else headers


def declared_length(value: str | bytes | None) -> int | None:
    """A Content-Length header's value, or None when absent or not a number (the server
    answers those itself)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


# --- ASGI -----------------------------------------------------------------------------


class BodyLimitASGI:
    """ASGI middleware: 413 for a body over the limit, before the application reads it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(dict(scope.get("headers", [])).get(b"content-length"))
        limit = self.limits.limit(scope.get("path", ""), declared=length is not None)
        if length is not None and length > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await self._refuse(send, limit)
                    # The application stops reading (Django: RequestAborted) and answers nothing.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = self.limits.refusal(limit)
        await send({"type": "http.response.start", "status": 413, "headers": self.limits.refusal_headers(body)})
        await send({"type": "http.response.body", "body": body})


# --- WSGI -----------------------------------------------------------------------------


class BodyLimitWSGI:
    """WSGI middleware: 413 for a body over the limit, without reading it."""

    def __init__(self, app: WSGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        length = declared_length(environ.get("CONTENT_LENGTH") or None)
        if length is not None:
            limit = self.limits.limit(path, declared=True)
            if length > limit:
                return self._refuse(start_response, limit)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # A chunked body: Django reads only CONTENT_LENGTH bytes (none here), so it is
            # read here, up to the limit, and handed on with its length.
            limit = self.limits.limit(path, declared=False)
            spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
            size = 0
            stream = environ["wsgi.input"]
            while chunk := stream.read(64 * 1024):
                size += len(chunk)
                if size > limit:
                    spooled.close()
                    return self._refuse(start_response, limit)
                spooled.write(chunk)
            spooled.seek(0)
            environ["wsgi.input"] = spooled
            environ["CONTENT_LENGTH"] = str(size)
        return self.app(environ, start_response)

    def _refuse(self, start_response: Callable[..., Any], limit: int) -> list[bytes]:
        body = self.limits.refusal(limit)
        headers = [(name.decode(), value.decode()) for name, value in self.limits.refusal_headers(body, close=False)]
        start_response("413 Content Too Large", headers)
        return [body]


# --- Daphne ---------------------------------------------------------------------------


def bound_daphne_requests(limits: BodyLimits) -> None:
    """Makes Daphne's HTTP requests refuse a body over the limit as it arrives (see the
    module's docstring). Daphne builds each request from `daphne.http_protocol.WebRequest`,
    looked up when a connection opens; this puts a subclass there."""
    from daphne import http_protocol
    from twisted.internet import reactor
    from twisted.web.http import HTTPChannel

    base: Any = getattr(http_protocol.WebRequest, "unbounded", http_protocol.WebRequest)

    class BoundedWebRequest(base):  # type: ignore[misc]
        unbounded = base
        body_refused = False
        body_received = 0
        body_limit: float = limits.default

        def gotLength(self, length: int | None) -> None:
            if not isinstance(self.channel, HTTPChannel):
                # HTTP/2 (Daphne over TLS with h2): BodyLimitASGI applies the limit instead.
                self.body_limit = float("inf")
                super().gotLength(length)
                return
            target = getattr(self.channel, "_path", b"") or b""
            path = unquote(target.split(b"?", 1)[0].decode("latin-1"))
            self.body_limit = limits.limit(path, declared=length is not None)
            if length is not None and length > self.body_limit:
                # No "100 Continue": the client learns now and need not send the body.
                self.requestHeaders.removeHeader(b"Expect")
                super().gotLength(0)  # an empty content file: nothing of the body is kept
                self.refuse_body()
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self.body_refused:
                return  # dropped while the connection lingers
            self.body_received += len(data)
            if self.body_received > self.body_limit:
                self.refuse_body()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
            if self.body_refused:
                self.loseConnection()  # the whole refused body has arrived
                return
            super().requestReceived(command, path, version)

        def refuse_body(self) -> None:
            self.body_refused = True
            body = limits.refusal(int(self.body_limit))
            head = b"HTTP/1.1 413 Content Too Large\r\n"
            head += b"".join(name + b": " + value + b"\r\n" for name, value in limits.refusal_headers(body))
            transport = self.channel.transport
            transport.write(head + b"\r\n" + body)
            self.channel.persistent = False
            # The rest of the body is read and dropped for a while, then the connection closes.
            cast(Any, reactor).callLater(LINGER_SECONDS, self.loseConnection)

    http_protocol.WebRequest = BoundedWebRequest

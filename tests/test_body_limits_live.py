"""Body limits on real servers (issue 17, item 1): Daphne and gunicorn answer a body over
MAX_BODY_BYTES with 413 and the envelope without holding it, declared or chunked, multipart
included, with no key at all; the server's memory (VmRSS) does not grow by the body's
size. The bulk upload may be larger (BULK_MAX_BODY_BYTES) when its key is outside the body.

Before the limit, a 60 MB multipart POST to /api/v1/send grew Daphne by 121 MB (and took
2.7 s) before its 401, and a chunked one to /login/ by 62 MB.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from messaging.models import Message
from tests import factories
from tests.live import GunicornServer, LiveServer

pytestmark = pytest.mark.slow

LIMIT = 1_000_000
BULK_LIMIT = 3_000_000
HUGE = 60 * 1024 * 1024
BOUNDARY = "pfboundary"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def server_pid(server: LiveServer) -> int:
    """The process that reads requests: Daphne itself, gunicorn's (one) worker."""
    assert server.process is not None
    pid = server.process.pid
    if isinstance(server, GunicornServer):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0])
    return pid


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory) -> Iterator[dict[str, LiveServer]]:
    env = {
        "API_KEY_SECRET": settings.API_KEY_SECRET,
        "EMBEDDED_WORKER": "false",
        "MAX_BODY_BYTES": str(LIMIT),
        "BULK_MAX_BODY_BYTES": str(BULK_LIMIT),
    }
    folder = tmp_path_factory.mktemp("servers")
    with LiveServer(folder, **env) as daphne, GunicornServer(folder, **env) as gunicorn:
        yield {"daphne": daphne, "gunicorn": gunicorn}


def post(port: int, path: str, body: Iterator[bytes], *, length: int | None, headers: str = "") -> tuple[int, bytes]:
    """POSTs the body as it is produced (declared or chunked) without waiting for an answer,
    as a hostile client would; returns the status and the answer's body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{framing}\r\n"
    head += f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    sock.sendall(head.encode())

    def send_body() -> None:
        try:
            for piece in body:
                sock.sendall(piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest of the body is not wanted

    sender = threading.Thread(target=send_body)
    sender.start()
    answer = b""
    while True:
        head_part, found, rest = answer.partition(b"\r\n\r\n")
        if found:
            length_line = [h for h in head_part.split(b"\r\n") if h.lower().startswith(b"content-length:")]
            if length_line and len(rest) >= int(length_line[0].split(b":")[1]):
                break
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    sock.close()
    sender.join(30)
    head_part, _found, rest = answer.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), rest


def multipart(size: int, *, fields: dict[str, str] | None = None, csv_rows: list[str] | None = None) -> Iterator[bytes]:
    """A multipart body of `size` bytes (an upload of x's), or with these fields and a CSV file."""
    if csv_rows is None:
        opening = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'.encode()
        yield opening
        left = size - len(opening)
        while left > 0:
            yield b"x" * min(65536, left)
            left -= 65536
        return
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in (fields or {}).items()
    ]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n\r\n')
    yield "".join(parts).encode() + "\r\n".join(csv_rows).encode() + f"\r\n--{BOUNDARY}--\r\n".encode()


def assert_refused(status: int, body: bytes, limit: int = LIMIT) -> None:
    assert status == 413
    answer = json.loads(body)
    assert (answer["response"], answer["status_code"]) == ("413", "5")
    assert str(limit) in answer["error"]


@pytest.mark.parametrize("name", ["daphne", "gunicorn"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(servers, name):
    server = servers[name]
    pid = server_pid(server)
    before = rss_mb(pid)
    assert_refused(*post(server.port, "/api/v1/send", multipart(HUGE), length=HUGE))
    assert_refused(*post(server.port, "/login/", multipart(HUGE), length=None))
    assert_refused(*post(server.port, "/api/device/v1/enroll", multipart(HUGE), length=HUGE))
    # The bulk route's larger limit, for a declared size.
    assert_refused(*post(server.port, "/api/v1/send/bulk", multipart(HUGE), length=HUGE), BULK_LIMIT)
    grown = rss_mb(pid) - before
    assert grown < 20, f"{name} grew by {grown:.0f} MB for 4 bodies of 60 MB"


def csv_rows(count: int) -> list[str]:
    return [f"+39333{i:07d},{'x' * 1500}" for i in range(count)]


@pytest.mark.parametrize("name", ["daphne", "gunicorn"])
def test_a_bulk_upload_over_the_limit_is_read_once_its_key_is_checked(servers, name, transactional_db):
    server = servers[name]
    account = factories.make_account(credit=100_000)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    rows = csv_rows(1000)  # 1.5 MB: over MAX_BODY_BYTES, under BULK_MAX_BODY_BYTES
    body = b"".join(multipart(0, csv_rows=rows))
    assert LIMIT < len(body) < BULK_LIMIT
    # The key in the body: it could be read only by reading the body first.
    with_key_inside = b"".join(multipart(0, fields={"api_key": secret}, csv_rows=rows))
    status, answer = post(server.port, "/api/v1/send/bulk", iter([with_key_inside]), length=len(with_key_inside))
    assert status == 413 and "Authorization header" in json.loads(answer)["error"]
    # A wrong key in the header: 401, and the body was not parsed.
    status, _answer = post(
        server.port, "/api/v1/send/bulk", iter([body]), length=len(body), headers="Authorization: Bearer nope\r\n"
    )
    assert status == 401
    assert not Message.objects.exists()
    # The key in the header: accepted.
    status, answer = post(
        server.port, "/api/v1/send/bulk", iter([body]), length=len(body), headers=f"Authorization: Bearer {secret}\r\n"
    )
    assert status == 200, answer
    assert json.loads(answer)["accepted"] == 1000
    # Chunked, the larger limit does not apply.
    status, answer = post(
        server.port, "/api/v1/send/bulk", iter([body]), length=None, headers=f"Authorization: Bearer {secret}\r\n"
    )
    assert_refused(status, answer)

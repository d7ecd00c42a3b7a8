"""GenioSms's clients as their real runtimes send them, replayed byte for byte.

`captured/*.http` are the requests of Java's `HttpURLConnection` (GET and POST), C#'s
`WebClient.UploadString` (POST) and the Perl CGI proxy (GET), each doing what GenioSms's
published sample does, recorded by `capture.py` (which says how to regenerate them).
Each is sent unchanged to a live Daphne (`make run`) and a live gunicorn (production's
server for `/tools/api.pl`) on the test database; the answers and the stored messages
are checked: the envelope with HTTP 200, and the number the client meant.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from accounts.lib import tokens
from accounts.models import ApiKey
from messaging.models import Message
from tests import factories
from tests.live import GunicornServer, LiveServer

pytestmark = pytest.mark.slow

CAPTURED = Path(__file__).resolve().parent / "captured"
CLIENTS = json.loads((CAPTURED / "clients.json").read_text())
CAPTURED_KEY: str = CLIENTS["api_key"]


def captured(name: str) -> bytes:
    return (CAPTURED / f"{name}.http").read_bytes()


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory) -> Iterator[dict[str, LiveServer]]:
    if not settings.REDIS_URL:
        # The servers are processes of their own: without Redis each keeps the captured key
        # in its own memory cache, which outlives the account a test made for it.
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    env = {"API_KEY_SECRET": settings.API_KEY_SECRET, "EMBEDDED_WORKER": "false", "DEBUG": "false"}
    folder = tmp_path_factory.mktemp("servers")
    with LiveServer(folder, **env) as daphne, GunicornServer(folder, **env) as gunicorn:
        yield {"daphne": daphne, "gunicorn": gunicorn}


@pytest.fixture
def shop(transactional_db):
    """An Italian list whose API key is the one the captured requests carry."""
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account, name="Shop", country="IT")
    key, _secret = factories.make_api_key(account=account, default_list=phone_list)
    digest = tokens.token_digest(CAPTURED_KEY, settings.API_KEY_SECRET)
    ApiKey.objects.filter(pk=key.pk).update(digest=digest, prefix=CAPTURED_KEY[:13])
    return phone_list


def replay(server: LiveServer, raw: bytes) -> tuple[int, bytes]:
    """Sends `raw` as it is on a new connection; returns the final status and the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            head, found, rest = data.partition(b"\r\n\r\n")
            if found and head.startswith(b"HTTP/1.1 100"):
                data = rest  # the interim answer to C#'s `Expect: 100-continue`
                continue
            if found:
                length = _content_length(head)
                if length is not None and len(rest) >= length:
                    return int(head.split(b" ")[1]), rest[:length]
            chunk = sock.recv(65536)
            if not chunk:
                return int(head.split(b" ")[1]), rest
            data += chunk


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


@pytest.mark.parametrize("server_name", ["daphne", "gunicorn"])
@pytest.mark.parametrize(
    ("name", "to", "text"),
    [
        # `to=+41…` in the query: the `+` decodes to a space; read as Swiss, not Italian.
        ("java-get", "+41791234567", "Your code is 123456"),
        # The body is not encoded at all: raw spaces, a raw UTF-8 `è`, `to=+39…`.
        ("java-post", "+393331234567", "Ciao, è tutto ok"),
        ("csharp-post", "+41791234567", "Grüezi, dein Code ist 123456 👋"),
        # The proxy got `to=+39…` from a browser and forwarded it as `to=%20393331234567`.
        ("perl-proxy-get", "+393331234567", "Ciao a tutti"),
    ],
)
def test_a_captured_request_is_accepted_for_the_number_its_client_meant(servers, shop, server_name, name, to, text):
    status, body = replay(servers[server_name], captured(name))
    answer = json.loads(body)
    assert status == 200
    assert (answer["response"], answer["status_code"]) == ("200", "2"), answer
    message = Message.objects.get(public_id=answer["message_id"])
    assert (message.to, message.text, message.phone_list_id) == (to, text, shop.pk)
    assert answer["to"] == to


@pytest.mark.parametrize("server_name", ["daphne", "gunicorn"])
def test_a_refusal_reaches_the_sample_as_an_envelope_with_http_200(servers, shop, server_name):
    wrong = CAPTURED_KEY[:-1] + ("A" if CAPTURED_KEY[-1] != "A" else "B")  # same length: same Content-Length
    raw = captured("csharp-post").replace(CAPTURED_KEY.encode(), wrong.encode())
    status, body = replay(servers[server_name], raw)
    assert status == 200  # C#'s WebClient throws on anything else, Java's sample drops the body
    assert (json.loads(body)["response"], json.loads(body)["status_code"]) == ("401", "3")
    # The same bytes to /api/v1/send keep the real status.
    status, body = replay(servers[server_name], raw.replace(b"POST /tools/api.pl ", b"POST /api/v1/send "))
    assert status == 401 and json.loads(body)["status_code"] == "3"
    assert not Message.objects.exists()


@pytest.mark.parametrize("server_name", ["daphne", "gunicorn"])
def test_a_raw_utf8_byte_in_a_get_query_is_refused_before_the_application(servers, shop, server_name):
    """Java's GET sends `è` as raw UTF-8 in the request line; both servers refuse the line
    with a bare 400 before Django sees it. docs/migrating-from-geniosms.md tells GenioSms
    users to send such texts by form POST (as `java-post` above does)."""
    raw = captured("java-get-accented")
    assert "è".encode() in raw.split(b"\r\n")[0]
    status, body = replay(servers[server_name], raw)
    assert status == 400
    assert b'"status_code"' not in body
    assert not Message.objects.exists()

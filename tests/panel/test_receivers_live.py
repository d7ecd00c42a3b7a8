"""The IPN receiver examples, run for real: each accepts a call signed by an independent
Standard Webhooks signer and refuses a tampered body or a stale timestamp."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from messaging.lib import snippets

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = '{"type":"message.delivered","data":{"message_id":"msg_1","status":"delivered"}}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def signed_headers(body: str, *, when: datetime, webhook_id: str = "evt_1") -> dict[str, str]:
    signature = Webhook(SECRET).sign(webhook_id, when, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


RUNNERS = {
    "python": lambda path, port: [sys.executable, str(path)],
    "node": lambda path, port: ["node", str(path)],
    "php": lambda path, port: ["php", "-S", f"127.0.0.1:{port}", str(path)],
    "java": lambda path, port: ["java", str(path)],
    "ruby": lambda path, port: ["ruby", str(path)],
}
FILES = {"python": "receiver.py", "node": "receiver.js", "php": "ipn.php", "java": "IpnReceiver.java", "ruby": "r.rb"}


@pytest.mark.parametrize("lang", list(RUNNERS))
def test_the_receiver_example_verifies_real_signatures(tmp_path, lang):
    runner = RUNNERS[lang]
    if shutil.which(runner(None, 0)[0]) is None:
        pytest.skip(f"{lang} is not installed")
    port = free_port()
    context = snippets.Context(base_url="http://unused", ipn_secret=SECRET, receiver_port=port)
    path = tmp_path / FILES[lang]
    path.write_text(snippets.render(snippets.RECEIVER, lang, context))
    process = subprocess.Popen(runner(path, port), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)  # polling a condition with a deadline
        url = f"http://127.0.0.1:{port}/phonefleet/ipn"
        now = datetime.now(UTC)
        assert httpx.post(url, content=BODY, headers=signed_headers(BODY, when=now)).status_code in (200, 204)
        tampered = BODY.replace("delivered", "failed")
        assert httpx.post(url, content=tampered, headers=signed_headers(BODY, when=now)).status_code == 401
        stale = now - timedelta(minutes=10)
        assert httpx.post(url, content=BODY, headers=signed_headers(BODY, when=stale)).status_code == 401
    finally:
        process.kill()
        process.wait()

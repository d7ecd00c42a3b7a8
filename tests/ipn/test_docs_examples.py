"""The receivers in docs/ipn.md and docs/migrating-from-geniosms.md, run against real callbacks."""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ipn import delivery
from ipn import services as ipn_services
from ipn.lib import signing
from ipn.models import IpnEndpoint
from messaging.services import callbacks
from tests import factories
from tests.ipn.conftest import make_message
from tests.live import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs"


def example(doc: str, name: str) -> str:
    """The fenced code block right after `<!-- example: name -->` in the doc."""
    text = (DOCS / doc).read_text()
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)\n```", text, re.S)
    assert found, f"no example {name} in {doc}"
    return found.group(1) + "\n"


@pytest.fixture
def serve(tmp_path):
    """Starts an example receiver (php -S or node) on a free port; yields its URL."""
    started = []

    def start(tool: str, filename: str, code: str, secret: str) -> str:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
        path = tmp_path / filename
        path.write_text(code)
        port = free_port()
        command = [tool, "-S", f"127.0.0.1:{port}", str(path)] if tool == "php" else [tool, str(path)]
        env = {**os.environ, "PHONEFLEET_IPN_SECRET": secret, "PORT": str(port)}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return f"http://127.0.0.1:{port}/"

    yield start
    for process in started:
        process.terminate()
        process.wait(5)


def deliver_sent_event(alice, phone_list, **fields):
    event = callbacks.record_message_event(
        message=make_message(account=alice, phone_list=phone_list, **fields), status="sent"
    )
    assert event is not None
    delivery.deliver_one_due_event()
    return event.attempts_log.get()


def test_the_python_stdlib_verifier_accepts_real_callbacks_and_refuses_tampered_ones(
    alice, alice_list, endpoint, receiver
):
    namespace: dict = {}
    exec(example("ipn.md", "verify.py"), namespace)
    verify = namespace["verify_phonefleet_ipn"]
    deliver_sent_event(alice, alice_list)
    got = receiver.wait_for(1)[0]
    assert verify(endpoint.secret, got.headers, got.body) is True
    assert verify(endpoint.secret, got.headers, got.body + b" ") is False
    assert verify(endpoint.secret, {**got.headers, "webhook-id": "evt_other"}, got.body) is False
    assert verify(ipn_services.rotate_secret(account=alice).secret, got.headers, got.body) is False


def tampered_is_refused(url: str, attempt_headers: dict[str, str], body: bytes) -> None:
    response = httpx.post(url, content=body + b"x", headers=attempt_headers)
    assert response.status_code == 400


@pytest.mark.parametrize(("tool", "filename"), [("php", "receiver.php"), ("node", "receiver.js")])
def test_the_php_and_node_receivers_verify_real_callbacks(
    alice, alice_list, private_ok, serve, receiver, tool, filename
):
    endpoint = ipn_services.get_or_create_endpoint(account=alice)
    url = serve(tool, filename, example("ipn.md", filename), endpoint.secret)
    ipn_services.update_endpoint(account=alice, url=url, enabled=True)
    attempt = deliver_sent_event(alice, alice_list)
    assert (attempt.status_code, attempt.response_body) == (200, "message.sent")
    # Sent by hand: the same request verifies; one more byte, or a stale timestamp, does not.
    test_attempt = ipn_services.send_test_event(account=alice)
    assert (test_attempt.status_code, test_attempt.response_body) == (200, "test")
    event = test_attempt.event
    now = int(time.time())
    headers = signing.webhook_headers(
        secrets=[endpoint.secret], webhook_id=event.webhook_id, timestamp=now, body=event.body.encode()
    )
    assert httpx.post(url, content=event.body.encode(), headers=headers).status_code == 200
    tampered_is_refused(url, headers, event.body.encode())
    stale = signing.webhook_headers(
        secrets=[endpoint.secret], webhook_id=event.webhook_id, timestamp=now - 600, body=event.body.encode()
    )
    assert httpx.post(url, content=event.body.encode(), headers=stale).status_code == 400


def test_the_geniosms_php_receiver_reads_sent_and_delivery_callbacks(alice, private_ok, serve):
    phone_list = factories.make_list(account=alice, name="Shop", pin="025719")
    endpoint = ipn_services.get_or_create_endpoint(account=alice)
    url = serve("php", "ipn.php", example("migrating-from-geniosms.md", "geniosms-receiver.php"), endpoint.secret)
    ipn_services.update_endpoint(account=alice, url=url, enabled=True, format=IpnEndpoint.Format.GENIOSMS)
    message = make_message(account=alice, phone_list=phone_list, ref="order 7 ✓")
    callbacks.record_message_event(message=message, status="sent")
    message.status = "delivered"
    callbacks.record_message_event(message=message, status="delivered")
    while delivery.deliver_one_due_event():
        pass
    answers = [a.response_body for a in message.ipn_events.get(type="message.sent").attempts_log.all()]
    answers += [a.response_body for a in message.ipn_events.get(type="message.delivered").attempts_log.all()]
    assert answers == ["SENT RESULT_OK order 7 ✓ 025719", "DELIVERY RESULT_OK order 7 ✓ 025719"]

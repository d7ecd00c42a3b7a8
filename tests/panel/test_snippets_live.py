"""The generated examples, run for real against a live server: each send example queues a
message; each verification example sends a code that a real phone connection takes, and
the check example then gets it approved."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from messaging.lib import snippets

pytestmark = pytest.mark.slow

RUNNERS = {
    "curl": (["bash"], "send.sh"),
    "python": ([sys.executable], "send.py"),
    "node": (["node"], "send.js"),
    "php": (["php"], "send.php"),
    "java": (["java"], "PhonefleetExample.java"),
    "ruby": (["ruby"], "send.rb"),
}


@pytest.mark.parametrize("lang", list(RUNNERS))
def test_the_send_example_queues_a_message(live_phonefleet, tmp_path, lang):
    command, filename = RUNNERS[lang]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    context = snippets.Context(
        base_url=live_phonefleet.url,
        list_token=live_phonefleet.account["list"],
        api_key=live_phonefleet.account["api_key"],
    )
    path = tmp_path / filename
    path.write_text(snippets.render(snippets.OPERATIONS_BY_SLUG["send"], lang, context))
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(r"msg_[A-Za-z0-9]+", result.stdout)
    assert found, result.stdout
    status = httpx.get(
        f"{live_phonefleet.url}/api/v1/messages/{found.group(0)}",
        headers={"Authorization": f"Bearer {live_phonefleet.account['api_key']}"},
    ).json()
    assert status["status"] == "queued" and status["to"] == "+393331234567", status


def test_the_geniosms_example_queues_a_message_too(live_phonefleet, tmp_path):
    context = snippets.Context(base_url=live_phonefleet.url, api_key=live_phonefleet.account["api_key"])
    path = tmp_path / "geniosms.py"
    path.write_text(snippets.render(snippets.OPERATIONS_BY_SLUG["geniosms"], "python", context))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert "'response': '200'" in result.stdout and re.search(r"msg_[A-Za-z0-9]+", result.stdout), result


@pytest.fixture
def live_phone(live_phonefleet) -> Iterator[ClientConnection]:
    """A phone of the live account's list, on the phones' WebSocket, as any phone client."""
    enrolled = httpx.post(
        f"{live_phonefleet.url}/api/device/v1/enroll", json={"pin": live_phonefleet.account["pin"], "name": "Live"}
    ).json()
    url = live_phonefleet.url.replace("http://", "ws://") + enrolled["ws_url"]
    with connect(url, additional_headers={"Authorization": f"Bearer {enrolled['device_token']}"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        yield ws


def take_sms(ws: ClientConnection, message_id: str) -> str:
    """Claims the message when it is offered; the text the `assign` frame carries."""
    while True:
        frame = json.loads(ws.recv(timeout=20))
        if frame["type"] == "offer" and frame["message_id"] == message_id:
            ws.send(json.dumps({"type": "claim", "message_id": message_id}))
        elif frame["type"] == "assign" and frame["message_id"] == message_id:
            ws.send(json.dumps({"type": "report", "message_id": message_id, "status": "sent"}))
            return str(frame["msg"])


def run_example(slug: str, lang: str, context: snippets.Context, folder) -> str:
    command, filename = RUNNERS[lang]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    path = folder / slug / filename
    path.parent.mkdir()
    path.write_text(snippets.render(snippets.OPERATIONS_BY_SLUG[slug], lang, context))
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("lang", "number"), [(lang, f"+3933312345{n:02}") for n, lang in enumerate(RUNNERS)])
def test_the_verification_examples_send_a_code_that_the_check_example_gets_approved(
    live_phonefleet, live_phone, tmp_path, lang, number
):
    context = snippets.Context(
        base_url=live_phonefleet.url,
        list_token=live_phonefleet.account["list"],
        api_key=live_phonefleet.account["api_key"],
        to=number,
    )
    started = run_example("verify_start", lang, context, tmp_path)
    verification_id = re.search(r"ver_[A-Za-z0-9]+", started)
    message_id = re.search(r"msg_[A-Za-z0-9]+", started)
    assert verification_id and message_id, started
    text = take_sms(live_phone, message_id.group(0))
    code = re.fullmatch(r"Your Phonefleet code is (\d{6})", text)
    assert code, text
    context = replace(context, verification_id=verification_id.group(0), verify_code=code.group(1))
    checked = run_example("verify_check", lang, context, tmp_path)
    assert re.search(r"""\bstatus["']?\s*:\s*["']approved["']""", checked), checked
    assert code.group(1) not in live_phonefleet.log.read_text()  # nor in the server's log

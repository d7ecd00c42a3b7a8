"""The official SMSGate JavaScript client (npm `android-sms-gateway`, pinned by
js/package-lock.json and installed from the registry with `npm ci`, unmodified) against a
live Phonefleet at the private server's layout (`/api/3rdparty/v1`), with a list's SMSGate
login and password: js/run.mjs does what an SMSGate user's script does and prints it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.smsgate_clients.conftest import RECIPIENTS, live_smsgate  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JS = Path(__file__).resolve().parent / "js"
# The client's dist/index.js is an ES module in a package without "type": "module": Node
# loads it from 20.19 on (module syntax detection).
MIN_NODE = (20, 19)


def node_version() -> tuple[int, ...] | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    text = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in text.strip().lstrip("v").split("."))


@pytest.fixture(scope="module")
def js_client() -> Path:
    """The pinned client in js/node_modules (`npm ci` when the lock file is newer)."""
    version = node_version()
    if version is None:
        pytest.skip("node and npm are not installed (apt-get install nodejs npm)")
    if version[:2] < MIN_NODE:
        pytest.skip(f"node {'.'.join(map(str, version))} cannot load the client's ES module (needs 20.19+)")
    installed = JS / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (JS / "package-lock.json").stat().st_mtime:
        # The client's only dependency is a peer one (typescript, for its types): not needed to run.
        command = ["npm", "ci", "--omit=peer", "--no-audit", "--no-fund"]
        result = subprocess.run(command, cwd=JS, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
    return JS


def test_the_js_client_sends_tracks_and_hears_webhooks(js_client, live_smsgate):  # noqa: F811
    base_url = f"{live_smsgate.url}/api/3rdparty/v1"
    command = ["node", "run.mjs", base_url, live_smsgate.login, live_smsgate.password, *RECIPIENTS]
    result = subprocess.run(command, cwd=js_client, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "error" not in out, out["error"]

    assert out["health"]["status"] == "pass"
    assert out["signingKeyShown"]
    assert [hook["event"] for hook in out["registered"]] == ["sms:sent", "sms:delivered"]
    assert sorted(hook["id"] for hook in out["listed"]) == sorted(hook["id"] for hook in out["registered"])
    assert "mms:received" in out["refusedMms"] and "400" in out["refusedMms"]

    assert out["sent"]["state"] == "Pending"
    assert out["final"]["state"] == "Delivered"
    assert sorted((r["phoneNumber"], r["state"]) for r in out["final"]["recipients"]) == [
        (to, "Delivered") for to in RECIPIENTS
    ]
    assert sorted(device["id"] for device in out["devices"]) == live_smsgate.phones

    received = out["received"]
    assert len(received) == 4
    assert all(hook["verified"] and not hook["tampered"] and hook["skewSeconds"] < 60 for hook in received)
    assert sorted((hook["body"]["event"], hook["body"]["payload"]["phoneNumber"]) for hook in received) == sorted(
        (event, to) for event in ("sms:delivered", "sms:sent") for to in RECIPIENTS
    )
    assert {hook["body"]["payload"]["messageId"] for hook in received} == {out["sent"]["id"]}
    assert [hook["id"] for hook in out["afterDelete"]] == [out["registered"][1]["id"]]

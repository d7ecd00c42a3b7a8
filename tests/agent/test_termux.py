"""The Termux backend drives termux-api's real `termux-sms-send` script (tests/agent/termux,
from termux-api-package): only the Termux:API app behind it, which cannot run here, is
replaced by a recorder of what the script hands it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.backends import TermuxBackend

SCRIPT = Path(__file__).parent / "termux" / "termux-sms-send.in"
# What the Termux:API app receives: the script's arguments, and its standard input.
RECORDER = """#!/bin/sh
printf '%s\\n' "$@" > "{log}.args"
cat > "{log}.stdin"
"""


@pytest.fixture
def termux(tmp_path, monkeypatch):
    """A Termux prefix on PATH holding the real termux-sms-send and the recording app."""
    prefix = tmp_path / "usr"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "libexec").mkdir()
    (prefix / "bin" / "sh").symlink_to("/bin/sh")
    script = prefix / "bin" / "termux-sms-send"
    script.write_text(SCRIPT.read_text().replace("@TERMUX_PREFIX@", str(prefix)))
    app = prefix / "libexec" / "termux-api"
    app.write_text(RECORDER.format(log=tmp_path / "app"))
    for path in (script, app):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def received() -> tuple[list[str], str]:
        args = (tmp_path / "app.args").read_text().splitlines()
        return args, (tmp_path / "app.stdin").read_text()

    return received


@pytest.mark.parametrize("text", ["Hello", "-5% off today", "C:\\new\\table", "two\nlines", "Prezzo 5€ 😀"])
async def test_the_text_reaches_the_app_unchanged(termux, text):
    result = await TermuxBackend().send(to="+393331234567", text=text, sim=None)
    assert result.status == "sent", result.error
    args, stdin = termux()
    assert args == ["SmsSend", "--esa", "recipients", "+393331234567"]
    assert stdin.strip() == text  # the app trims what it reads (ResultReturner.WithStringInput)


async def test_our_first_sim_is_androids_slot_zero(termux):
    await TermuxBackend().send(to="+393331234567", text="Hi", sim=1)
    args, _stdin = termux()
    assert args[-2:] == ["slot", "0"]


# --- The radio's state, read before sending (termux-sms-send reports no send result) ----------

# termux-telephony-deviceinfo's answer on a phone that can send (fields as TelephonyAPI writes them).
READY = {
    "data_enabled": "true",
    "data_state": "connected",
    "phone_type": "gsm",
    "network_operator": "22210",
    "network_operator_name": "vodafone IT",
    "network_type": "lte",
    "sim_state": "ready",
}


@pytest.fixture
def deviceinfo(termux, tmp_path):
    """Puts a termux-telephony-deviceinfo on the Termux PATH that prints the JSON given."""
    script = tmp_path / "usr" / "bin" / "termux-telephony-deviceinfo"

    def answer(info: dict | None, *, code: int = 0) -> None:
        body = json.dumps(info) if info is not None else "not json"
        script.write_text(f"#!/bin/sh\ncat <<'JSON'\n{body}\nJSON\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    return answer


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"sim_state": "absent", "network_operator": ""}, "NO_SIM (SIM state: absent)"),
        ({"sim_state": "pin_required"}, "NO_SIM (SIM state: pin_required)"),
        (
            {"sim_state": "6", "network_operator": ""},
            "RESULT_ERROR_RADIO_OFF (SIM not ready: airplane mode or radio off)",
        ),
        ({"network_operator": "", "network_type": "unknown"}, "RESULT_ERROR_NO_SERVICE (no mobile network registered)"),
    ],
)
async def test_a_radio_that_cannot_send_is_reported_with_its_error_and_nothing_is_sent(
    termux, deviceinfo, tmp_path, changes, error
):
    deviceinfo({**READY, **changes})
    result = await TermuxBackend().send(to="+393331234567", text="Hi", sim=None)
    assert (result.status, result.error) == ("failed", error)
    assert not (tmp_path / "app.args").exists()  # termux-sms-send never ran


async def test_a_ready_radio_sends(termux, deviceinfo):
    deviceinfo(READY)
    result = await TermuxBackend().send(to="+393331234567", text="Hi", sim=None)
    assert result.status == "sent", result.error


@pytest.mark.parametrize("broken", [{"code": 1, "info": READY}, {"code": 0, "info": None}])
async def test_an_unreadable_radio_state_does_not_stop_the_send(termux, deviceinfo, broken):
    deviceinfo(broken["info"], code=broken["code"])
    result = await TermuxBackend().send(to="+393331234567", text="Hi", sim=None)
    assert result.status == "sent", result.error


async def test_a_failing_termux_sms_send_is_a_generic_failure(termux, deviceinfo, tmp_path):
    deviceinfo(READY)
    (tmp_path / "usr" / "libexec" / "termux-api").write_text("#!/bin/sh\necho 'no permission' >&2\nexit 3\n")
    result = await TermuxBackend().send(to="+393331234567", text="Hi", sim=None)
    assert (result.status, result.error) == ("failed", "RESULT_ERROR_GENERIC_FAILURE: no permission")

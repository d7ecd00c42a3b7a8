"""The Termux backend drives termux-api's real `termux-sms-send` script (tests/agent/termux,
from termux-api-package): only the Termux:API app behind it, which cannot run here, is
replaced by a recorder of what the script hands it."""

from __future__ import annotations

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

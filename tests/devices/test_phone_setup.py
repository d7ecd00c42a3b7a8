"""devices/lib/phone_setup.py: the Termux line, the agent as one file, loopback addresses."""

from __future__ import annotations

import shlex
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from devices.lib import phone_setup

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.10", True),
        ("http://localhost:8000", True),
        ("http://phonefleet.localhost", True),
        ("http://[::1]:8000", True),
        ("http://192.168.1.10:8000", False),
        ("https://sms.example.com", False),
        ("http://[2001:db8::1]", False),
    ],
)
def test_loopback_addresses_are_the_machines_own(url, loopback):
    assert phone_setup.is_loopback(url) is loopback


def test_the_termux_line_quotes_what_the_shell_would_split():
    line = phone_setup.termux_command(base_url="https://sms.example.com/a b", pin="04718263")
    words = shlex.split(line.replace('"$(getprop ro.product.model)"', "MODEL"))
    assert "https://sms.example.com/a b/agent.pyz" in words
    assert words[words.index("--server") + 1] == "https://sms.example.com/a b"
    assert words[words.index("--pin") + 1] == "04718263"  # the leading zero stays


def test_starting_again_needs_no_pin():
    assert "--pin" not in phone_setup.agent_arguments(base_url="https://sms.example.com")


def test_the_zipapp_holds_the_agent_and_runs_its_command_line():
    archive = zipfile.ZipFile(BytesIO(phone_setup.agent_zipapp(AGENT_DIR)))
    names = set(archive.namelist())
    assert {"__main__.py", "agent/__init__.py", "agent/__main__.py", "agent/phone.py"} <= names
    assert archive.read("__main__.py").decode() == phone_setup.ZIPAPP_MAIN

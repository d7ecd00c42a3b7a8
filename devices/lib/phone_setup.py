"""What a real phone needs to join a list: the reference agent as one file it can
download, the Termux command line that runs it, and whether the server's address is one a
phone can reach at all. Django-free."""

from __future__ import annotations

import io
import ipaddress
import shlex
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

AGENT_FILE = "phonefleet-agent.pyz"
TOKEN_FILE = "~/.phonefleet.json"
# Termux's packages: Python and pip (a package of its own since Python 3.11 there), the
# termux-sms-send / -sms-list / -battery-status tools (they talk to the Termux:API app) and
# curl; the agent's one dependency is websockets.
TERMUX_PACKAGES = "pkg install -y python python-pip termux-api curl && pip install websockets"
ZIPAPP_MAIN = "from agent.__main__ import main\n\nmain()\n"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def agent_zipapp(package_dir: Path) -> bytes:
    """The agent package as a Python zip application (`python phonefleet-agent.pyz …`):
    its modules under `agent/`, and a `__main__.py` that runs its command line."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__main__.py", ZIPAPP_MAIN)
        for path in sorted(package_dir.glob("*.py")):
            archive.write(path, f"agent/{path.name}")
    return buffer.getvalue()


def agent_arguments(*, base_url: str, pin: str | None = None) -> str:
    """The agent's arguments for a Termux phone: with the PIN to enrol, without it to start
    again (the token file remembers the phone)."""
    args = ["--server", base_url, *(["--pin", pin] if pin else []), "--backend", "termux"]
    return f'{shlex.join(args)} --name "$(getprop ro.product.model)" --token-file {TOKEN_FILE}'


def termux_command(*, base_url: str, pin: str) -> str:
    """One line to paste into Termux: installs what the agent needs, downloads it from
    this server, keeps the phone awake and enrols it in the list with `pin`."""
    download = f"curl -fsSLo {AGENT_FILE} {shlex.quote(base_url + '/agent.pyz')}"
    run = f"python {AGENT_FILE} {agent_arguments(base_url=base_url, pin=pin)}"
    return f"{TERMUX_PACKAGES} && {download} && termux-wake-lock && {run}"


def is_loopback(base_url: str) -> bool:
    """Whether the URL's host is this machine's own address, which no phone can open."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def lan_address() -> str | None:
    """This machine's address on its local network (the one its default route uses), or
    None. Connecting a UDP socket sends nothing; it only picks the route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address = probe.getsockname()[0]
    except OSError:
        return None
    return address if ipaddress.ip_address(address).is_private and address != "0.0.0.0" else None  # noqa: S104

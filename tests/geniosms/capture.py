"""Captures the exact request bytes that GenioSms-style clients send, from real runtimes.

Each program in `clients/` does what one of GenioSms's published samples does (the
same library calls, the same string joins): Java's `HttpURLConnection` GET and POST
(`Main.java`), C#'s `WebClient.UploadString` (`GenioApi.cs`) and the Perl CGI proxy
(`sendSms.pl`). This script runs each against a local listener that records the bytes
it receives, and once more against a listener that answers HTTP 401, to record what the
program then does with the answer.

Regenerate (needs java, mono's `mcs` and `mono`, perl with CGI and LWP:
`apt-get install -y default-jdk-headless mono-mcs mono-runtime libcgi-pm-perl libwww-perl`):

    LC_ALL=C.UTF-8 .venv/bin/python tests/geniosms/capture.py

It rewrites `captured/*.http` (the bytes as received) and `captured/clients.json` (the
API key the requests carry, each runtime's version and command, and what each program
printed for a 200 and for a 401). `test_captured_clients.py` replays the bytes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from accounts.lib import tokens  # noqa: E402 (Django-free; needs the repository on the path)

CLIENTS = HERE / "clients"
CAPTURED = HERE / "captured"
ENVELOPE = b'{"response": "200", "status_code": "2", "message_id": "msg_captured"}'
REFUSAL = b'{"response": "401", "status_code": "3", "error": "Wrong API key."}'

# name -> (client, to, msg): to and msg as a user passes them to the sample.
CASES = {
    "java-get": ("java-get", "+41791234567", "Your code is 123456"),
    "java-get-accented": ("java-get", "3331234567", "Il tuo codice è 123456"),
    "java-post": ("java-post", "+393331234567", "Ciao, è tutto ok"),
    "csharp-post": ("csharp", "+41791234567", "Grüezi, dein Code ist 123456 👋"),
    "perl-proxy-get": ("perl", "+393331234567", "Ciao a tutti"),
}


class Listener:
    """Accepts HTTP/1.x requests one at a time, keeps the bytes of each, answers `status`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.status = 200
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            with conn:
                self.requests.append(self._read(conn))
                body = ENVELOPE if self.status == 200 else REFUSAL
                reason = b"OK" if self.status == 200 else b"Unauthorized"
                head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                conn.sendall(head % (self.status, reason, len(body)) + b"Connection: close\r\n\r\n" + body)

    @staticmethod
    def _read(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body


def _command(client: str, url: str, to: str, msg: str, key: str, build: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if client.startswith("java"):
        mode = client.removeprefix("java-")
        return ["java", str(CLIENTS / "GenioSmsClient.java"), mode, url, to, msg, key], env
    if client == "csharp":
        return ["mono", str(build / "GenioSmsClient.exe"), url, to, msg, key], env
    # The proxy is called as a browser calls it: `+` and spaces as typed, the text encoded.
    query = f"to={to}&msg={msg.replace(' ', '%20')}"
    env.update(QUERY_STRING=query, REQUEST_METHOD="GET", API_URL=url, API_KEY=key)
    return ["perl", str(CLIENTS / "genio_proxy.pl")], env


def _version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def main() -> None:
    key = tokens.generate_token("pf_live")
    listener = Listener()
    url = f"http://127.0.0.1:{listener.port}/tools/api.pl"
    CAPTURED.mkdir(exist_ok=True)
    report: dict[str, object] = {
        "api_key": key,
        "locale": os.environ.get("LC_ALL") or os.environ.get("LANG", ""),
        "runtimes": {
            "java": _version(["java", "-version"]),
            "mono": _version(["mono", "--version"]),
            "perl": _version(["perl", "-e", "print $^V"]),
        },
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as build_dir:
        build = Path(build_dir)
        subprocess.run(["mcs", f"-out:{build / 'GenioSmsClient.exe'}", str(CLIENTS / "GenioSmsClient.cs")], check=True)
        for name, (client, to, msg) in CASES.items():
            outcome = {}
            for status in (200, 401):
                listener.status = status
                before = len(listener.requests)
                command, env = _command(client, url, to, msg, key, build)
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
                assert len(listener.requests) == before + 1, (name, done.stderr)
                if status == 200:
                    (CAPTURED / f"{name}.http").write_bytes(listener.requests[-1])
                outcome[str(status)] = {
                    "exit_code": done.returncode,
                    "stdout": done.stdout.strip(),
                    "stderr_first_line": (done.stderr.strip().splitlines() or [""])[0],
                }
            report["cases"][name] = {  # type: ignore[index]
                "client": client,
                "to": to,
                "msg": msg,
                "command": [Path(part).name if Path(part).is_file() else part for part in command],
                "answered": outcome,
            }
    (CAPTURED / "clients.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"captured {len(CASES)} requests into {CAPTURED}")


if __name__ == "__main__":
    main()

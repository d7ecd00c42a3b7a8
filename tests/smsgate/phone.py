"""A stand-in for the SMSGate app: the same requests, headers and formats as the real app."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from devices.smsgate import wire

USER_AGENT = "me.capcom.smsgateway/1.68.0"
PHONE_OFFSET = "+07:00"


def phone_time(at: str = "2024-05-13T16:49:17.357") -> str:
    """A date as the phone writes it: `yyyy-MM-dd'T'HH:mm:ss.SSSXXX` in its own offset."""
    return at + PHONE_OFFSET


class SmsGateApp:
    """One installed app: registers with a private token, then speaks with its device token."""

    def __init__(self, base_url: str, *, user_agent: str = USER_AGENT) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"User-Agent": user_agent}, timeout=10)
        self.token = ""
        self.device_id = ""
        self.signing_key = ""

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sign_up(self, private_token: str, name: str = "Google/sdk_gphone64_x86_64") -> httpx.Response:
        answer = self.http.post("/device", json={"name": name}, headers={"Authorization": f"Bearer {private_token}"})
        if answer.status_code == 201:
            self.token, self.device_id = answer.json()["token"], answer.json()["id"]
        return answer

    def patch_device(self, sims: list[dict[str, Any]] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"id": self.device_id}
        if sims is not None:
            body["simCards"] = sims
        return self.http.patch("/device", json=body, headers=self._auth())

    def sync_settings(self) -> dict[str, Any]:
        answer = self.http.get("/settings", headers=self._auth())
        answer.raise_for_status()
        self.signing_key = answer.json()["webhooks"]["signing_key"]
        return answer.json()

    def webhooks(self) -> list[dict[str, Any]]:
        answer = self.http.get("/webhooks", headers=self._auth())
        answer.raise_for_status()
        return answer.json()

    def fetch(self, order: str = "lifo") -> list[dict[str, Any]]:
        answer = self.http.get("/message", params={"order": order}, headers=self._auth())
        answer.raise_for_status()
        return answer.json()

    def report(self, message: dict[str, Any], state: str, states: dict[str, str], error: str | None = None) -> int:
        """One PATCH /message with the full snapshot, as the app's SendStateWorker sends it."""
        recipient: dict[str, Any] = {"phoneNumber": message["phoneNumbers"][0], "state": state}
        if error is not None:
            recipient["error"] = error
        body = [{"id": message["id"], "state": state, "recipients": [recipient], "states": states}]
        return self.http.patch("/message", json=body, headers=self._auth()).status_code

    def post_webhook(
        self,
        url: str,
        event: str,
        payload: dict[str, Any],
        *,
        event_id: str | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        """A webhook as the phone signs it: hex HMAC-SHA256 of raw body + X-Timestamp."""
        body = json.dumps(
            {
                "id": event_id or uuid.uuid4().hex,
                "webhookId": "pf-" + event.replace(":", "-"),
                "event": event,
                "deviceId": self.device_id,
                "payload": payload,
            }
        ).encode()
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = wire.webhook_signature(self.signing_key, body, stamp)
        return self.http.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", "X-Timestamp": stamp, "X-Signature": signature},
        )


class EventStream:
    """`GET /events` held open like the app's SSE service; reads events as they come."""

    def __init__(self, app: SmsGateApp) -> None:
        self._context = app.http.stream("GET", "/events", headers=app._auth(), timeout=httpx.Timeout(10, read=5))
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines() if self.response.status_code == 200 else iter(())
        self.events: list[tuple[str, str]] = []
        self.comments: list[str] = []
        self._event: dict[str, str] = {}

    def _read_line(self) -> None:
        line = next(self._lines)
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
        elif line == "":
            if self._event:
                self.events.append((self._event.get("event", "message"), self._event.get("data", "")))
            self._event = {}
        else:
            field, _, value = line.partition(":")
            self._event[field] = value.removeprefix(" ")

    def read_until(self, condition, timeout: float = 10.0) -> None:
        """Reads until `condition(self)` holds (keep-alives arrive often, so reads never stall)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"stream condition not met; events={self.events} comments={self.comments[-3:]}")
            self._read_line()

    def close(self) -> None:
        self._context.__exit__(None, None, None)

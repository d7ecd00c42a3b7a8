"""What a phone remembers across restarts: its token and what it already sent."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Outcomes kept per phone; older ones are long past any lease or TTL.
MAX_OUTCOMES = 5000


@dataclass
class PhoneState:
    """The enrolment and the outcome of every message this phone sent, saved to `path`
    (kept in memory only when `path` is None)."""

    path: Path | None = None
    device_id: str = ""
    device_token: str = ""
    list_token: str = ""
    ws_url: str = ""
    # message_id → {"status", "error", "at", "acked"}
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> PhoneState:
        if path is None or not path.exists():
            return cls(path=path)
        data = json.loads(path.read_text())
        return cls(
            path=path,
            device_id=data.get("device_id", ""),
            device_token=data.get("device_token", ""),
            list_token=data.get("list", ""),
            ws_url=data.get("ws_url", ""),
            outcomes=data.get("outcomes", {}),
        )

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "device_id": self.device_id,
                "device_token": self.device_token,
                "list": self.list_token,
                "ws_url": self.ws_url,
                "outcomes": self.outcomes,
            }
        )
        # Write-then-rename: a crash never leaves half a file (and never loses the token).
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".agent-")
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def record(self, message_id: str, status: str, error: str, at: str) -> None:
        """Stores an outcome before it is reported, so it is never sent twice."""
        self.outcomes[message_id] = {"status": status, "error": error, "at": at, "acked": False}
        while len(self.outcomes) > MAX_OUTCOMES:
            self.outcomes.pop(next(iter(self.outcomes)))
        self.save()

    def acked(self, message_id: str, status: str) -> None:
        outcome = self.outcomes.get(message_id)
        if outcome is not None and outcome["status"] == status and not outcome["acked"]:
            outcome["acked"] = True
            self.save()

    def unacked(self) -> list[tuple[str, dict[str, Any]]]:
        return [(mid, outcome) for mid, outcome in self.outcomes.items() if not outcome["acked"]]

"""Wire details of the SMSGate Android app that break it when wrong. Django-free.

- Dates: the app parses `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`; more than three fractional
  digits are mis-read (`SSS` swallows them all), so we emit exactly three, with an offset.
- Webhook signatures: lowercase hex HMAC-SHA256, key = the device's signing key,
  message = the raw body bytes followed by the `X-Timestamp` string.
- The User-Agent `me.capcom.smsgateway/<version>` is the only version signal.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

# At most nine digits a part and nine parts: anything longer is no version of the app (and
# a 5,000-digit part is past what int() converts).
USER_AGENT_PATTERN = re.compile(r"me\.capcom\.smsgateway/(\d{1,9}(?:\.\d{1,9}){0,8})(?!\d)")
SIGNATURE_TOLERANCE_SECONDS = 300
# A Unix time in seconds, ASCII digits only (str.isdigit also takes "²" and other scripts' digits).
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")


def format_datetime(value: datetime) -> str:
    """`2024-05-13T16:49:17.357+00:00`: exactly three fractional digits and an offset."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_datetime(value: object) -> datetime | None:
    """The phone's dates (`…17.357+07:00`, `…Z`, whole seconds) as aware datetimes;
    None when absent or unreadable (a naive time is taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        # In UTC: 0001-01-01T00:00:00+23:59 is readable but falls before the year 1.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def app_version(user_agent: str) -> tuple[int, ...]:
    """The app version from its User-Agent, e.g. (1, 67, 0); () for anything else."""
    found = USER_AGENT_PATTERN.search(user_agent or "")
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


def app_version_string(user_agent: str) -> str:
    """The app version as text (`1.67.0`), or "" when the caller is not the app."""
    return ".".join(str(part) for part in app_version(user_agent))


def webhook_signature(key: str, body: bytes, timestamp: str) -> str:
    """What the phone puts in `X-Signature` for this body and `X-Timestamp`."""
    return hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def verify_webhook_signature(*, key: str, body: bytes, timestamp: str, signature: str, now: float) -> bool:
    """True when the signature matches the exact body bytes (constant-time) and the
    timestamp is within ±5 minutes of `now` (Unix seconds)."""
    if not key or not TIMESTAMP_PATTERN.fullmatch(timestamp):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(webhook_signature(key, body, timestamp), signature.strip().lower())


def sse_event(name: str, data: str = "{}") -> bytes:
    """One SSE event. OkHttp-SSE drops events with an empty data field, so data is never empty."""
    return f"event: {name}\ndata: {data or '{}'}\n\n".encode()


def sse_comment(text: str) -> bytes:
    """A comment line: keeps proxies from closing an idle stream; clients ignore it."""
    return f": {text}\n\n".encode()

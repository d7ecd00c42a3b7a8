"""Standard Webhooks signing (https://www.standardwebhooks.com/). Django-free.

The signature is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the
base64-decoded bytes of a ``whsec_…`` secret. Several secrets (during a rotation)
give several signatures, space-separated in one header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    """A new secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the prefix is optional, as verifiers accept)."""
    text = secret.removeprefix(SECRET_PREFIX)
    # Verifiers tolerate missing padding; so do we.
    return base64.b64decode(text + "=" * (-len(text) % 4))


def sign(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature over the exact bytes that are sent."""
    signed = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(*, secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(secret=s, webhook_id=webhook_id, timestamp=timestamp, body=body) for s in secrets)


def webhook_headers(*, secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    if "." in webhook_id:
        raise ValueError("a webhook id must not contain '.'")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets=secrets, webhook_id=webhook_id, timestamp=timestamp, body=body),
    }


# --- SMSGate ------------------------------------------------------------------------
# SMSGate receivers (https://docs.sms-gate.app/features/webhooks/) verify two headers:
# `X-Timestamp` (Unix seconds) and `X-Signature`, the lowercase hex HMAC-SHA256 keyed
# with the UTF-8 bytes of the signing key over the raw body followed by that timestamp.


def generate_smsgate_key() -> str:
    """A new SMSGate signing key (the app's own are 8 characters; ours are longer)."""
    return secrets.token_urlsafe(24)


def smsgate_signature(*, key: str, body: bytes, timestamp: int) -> str:
    """SMSGate's `X-Signature` over the exact bytes that are sent."""
    return hmac.new(key.encode(), body + str(timestamp).encode(), hashlib.sha256).hexdigest()


def smsgate_headers(*, key: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The two SMSGate signature headers for one attempt."""
    return {"X-Signature": smsgate_signature(key=key, body=body, timestamp=timestamp), "X-Timestamp": str(timestamp)}

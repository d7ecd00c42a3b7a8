"""Compact JSON Web Tokens signed with HMAC-SHA256 (RFC 7519, `alg` HS256 only). Django-free.

SMSGate's `POST /auth/token` hands out JWTs; the clients only carry them as Bearer tokens,
so nothing here needs more than HS256 with one server key. Verification accepts only the
header this module writes (no `alg` negotiation, so no `none` and no key confusion).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

HEADER = {"alg": "HS256", "typ": "JWT"}
# A token longer than this is refused before any decoding.
MAX_TOKEN_LENGTH = 4096


class InvalidJwt(ValueError):
    """The token is malformed, signed with another key, or expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidJwt("bad base64") from exc


def _signature(key: bytes, signing_input: str) -> str:
    return _b64encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


_ENCODED_HEADER = _b64encode(json.dumps(HEADER, separators=(",", ":")).encode())


def encode(claims: dict[str, Any], *, key: bytes) -> str:
    """The signed token for these claims (JSON-serialisable)."""
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{_ENCODED_HEADER}.{payload}"
    return f"{signing_input}.{_signature(key, signing_input)}"


def decode(token: str, *, key: bytes, now: float) -> dict[str, Any]:
    """The claims of a token this module signed with `key`, if `exp` (Unix seconds) is after
    `now`; raises InvalidJwt otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidJwt("malformed")
    pieces = token.split(".")
    if len(pieces) != 3:
        raise InvalidJwt("malformed")
    header, payload, signature = pieces
    if not hmac.compare_digest(header, _ENCODED_HEADER):
        raise InvalidJwt("unexpected header")
    if not hmac.compare_digest(_signature(key, f"{header}.{payload}"), signature):
        raise InvalidJwt("bad signature")
    try:
        claims = json.loads(_b64decode(payload))
    except ValueError as exc:
        raise InvalidJwt("bad payload") from exc
    if not isinstance(claims, dict):
        raise InvalidJwt("bad payload")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
        raise InvalidJwt("expired")
    return claims

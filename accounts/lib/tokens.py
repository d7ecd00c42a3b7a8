"""Secret tokens with a visible type prefix and a checksum tail (GitHub-token style).

A token is ``<prefix>_<30 base62 chars><6 base62 chars of CRC32>``: about 178 random
bits, a typo is caught by the checksum without touching the database, and only an
HMAC-SHA256 digest is ever stored. Django-free.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 30
CHECKSUM_LENGTH = 6


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_token(prefix: str) -> str:
    """A new random token such as ``pf_live_…``."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}_{body}{_checksum(body)}"


def has_valid_checksum(token: str, prefix: str) -> bool:
    """True when the token has the prefix, the right length and a matching checksum."""
    start = prefix + "_"
    if not token.startswith(start):
        return False
    rest = token[len(start) :]
    # The alphabet is exactly ASCII's letters and digits.
    if len(rest) != BODY_LENGTH + CHECKSUM_LENGTH or not (rest.isascii() and rest.isalnum()):
        return False
    body, tail = rest[:BODY_LENGTH], rest[BODY_LENGTH:]
    return hmac.compare_digest(_checksum(body), tail)


def token_digest(token: str, secret: str) -> str:
    """The keyed digest that is stored instead of the token (hex HMAC-SHA256)."""
    return hmac.digest(secret.encode(), token.encode(), hashlib.sha256).hex()


# Random bytes to base-62 characters: the 248 values below 4 × 62 map evenly onto the
# alphabet, the 8 above are dropped (so each character is uniform).
_BYTE_TO_BASE62 = bytes(ord(ALPHABET[b % 62]) if b < 248 else 0 for b in range(256))
_DROPPED_BYTES = bytes(range(248, 256))


def public_id(prefix: str, nbytes: int = 12) -> str:
    """A public identifier such as ``msg_…``: URL-safe, without dots; `nbytes` × 4/3 + 1
    random base-62 characters (17, about 101 bits, by default). Made from OS random bytes
    by one table lookup in C: a bulk send makes 10,000 of these."""
    length = nbytes * 4 // 3 + 1
    chars = b""
    while len(chars) < length:
        chars += os.urandom(length + 2).translate(_BYTE_TO_BASE62, _DROPPED_BYTES)
    return f"{prefix}_{chars[:length].decode()}"


def random_pin(digits: int = 8) -> str:
    """A random numeric PIN; leading zeros are kept (it is a string)."""
    return "".join(secrets.choice("0123456789") for _ in range(digits))

"""One-time codes: making them, storing them only as a keyed digest, and sealing the SMS
that carries one until a phone takes it. Django-free: the caller passes the server secret.

Why a keyed digest: a 6-digit code has a million values, so a plain SHA-256 of it is
reversed by trying them all in a second. An HMAC keyed with a server secret cannot be
tried without that secret, which never enters the database. The digest also covers the
verification id, so one code sent twice gives two unrelated digests.

Why sealing: the phone must get the real text ("Your code is 482913"), so the server must
hold it until a phone claims it. It is kept encrypted (AES-256-GCM from `cryptography`,
bound to the message id), and the stored message shows the code masked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PLACEHOLDER = "{code}"
MASK_CHAR = "*"  # one GSM-7 unit, like a digit: the masked text has the real text's parts
NONCE_BYTES = 12


class Unsealable(ValueError):
    """A sealed text that this key cannot open (another key, or altered)."""


def derive_key(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the server secret (HMAC-SHA256), so the
    digest key and the sealing key are independent."""
    return hmac.new(secret.encode(), f"phonefleet:{purpose}".encode(), hashlib.sha256).digest()


def generate_code(length: int) -> str:
    """`length` random decimal digits from the OS's CSPRNG (leading zeros kept)."""
    return str(secrets.randbelow(10**length)).zfill(length)


def code_digest(key: bytes, verification_id: str, code: str) -> str:
    """The stored form of a code: hex HMAC-SHA256 of the verification id and the code."""
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(key: bytes, verification_id: str, code: str, digest: str) -> bool:
    """True if `code` is the one whose digest is stored; compared in constant time."""
    return hmac.compare_digest(code_digest(key, verification_id, code), digest)


def fill(template: str, code: str) -> str:
    """The SMS text: every `{code}` of the template replaced (other braces stay as written)."""
    return template.replace(PLACEHOLDER, code)


def mask(template: str, length: int) -> str:
    """The text as it is stored and shown: the code replaced by `*` × its length."""
    return template.replace(PLACEHOLDER, MASK_CHAR * length)


def seal(key: bytes, text: str, bound_to: str) -> str:
    """`text` encrypted and authenticated with `key`, usable only with the same `bound_to`
    (the message id): base64 of nonce + ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, text.encode(), bound_to.encode())).decode()


def unseal(key: bytes, sealed: str, bound_to: str) -> str:
    """The text `seal` sealed; raises Unsealable for another key, id or altered bytes."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise Unsealable("the sealed text cannot be opened with this key") from exc

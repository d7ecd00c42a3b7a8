"""Access and refresh tokens of SMSGate's client API (`POST /auth/token`, `/auth/token/refresh`,
`DELETE /auth/token/{jti}`).

A token is a JWT (HS256, `messaging/lib/jwt.py`) naming its account, the credential it was
issued to (a list's SMSGate login or a Phonefleet API key) and its scopes. Each issued token
has a `SmsGateToken` row, so revocation is checked on every use (one query) and survives a
cache flush. A token lives no longer than its credential: a revoked key, a revoked login or a
changed password ends it, and an API key's rules (IP allow-list, rate limit, default list)
keep applying to calls made with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import errors
from devices.models import EnrolmentToken
from messaging.lib import jwt
from messaging.models import SmsGateToken

DEFAULT_ACCESS_TTL = timedelta(hours=1)
MAX_ACCESS_TTL = timedelta(days=30)
REFRESH_TTL = timedelta(days=30)
# SMSGate's scopes (its server's `permissions`); `all:any` allows everything.
SCOPES = (
    "all:any",
    "messages:send",
    "messages:read",
    "messages:list",
    "messages:cancel",
    "messages:export",
    "devices:list",
    "devices:delete",
    "webhooks:list",
    "webhooks:write",
    "webhooks:delete",
    "settings:read",
    "settings:write",
    "inbox:list",
    "inbox:read",
    "inbox:refresh",
    "logs:read",
    "tokens:manage",
    "tokens:refresh",
)
# How a token names the credential it was issued to.
LOGIN_SUBJECT = "login"
KEY_SUBJECT = "key"


class InvalidToken(errors.DomainError):
    """A token that is malformed, expired, revoked, or whose credential is gone (401)."""

    default_message = "Invalid or expired token."


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    jti: str
    kind: str
    account_id: int
    subject: str  # LOGIN_SUBJECT or KEY_SUBJECT
    subject_id: int  # the login credential's or the API key's id
    fingerprint: str  # for a login: a piece of its password's digest (a new password ends the token)
    scopes: frozenset[str]


@dataclass(frozen=True)
class IssuedToken:
    """What `POST /auth/token` answers."""

    jti: str
    access_token: str
    refresh_token: str
    expires_at: datetime


def _signing_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"phonefleet-smsgate-jwt", hashlib.sha256).digest()


def login_fingerprint(credential: EnrolmentToken) -> str:
    """A piece of the login's stored digest: it changes when the password does."""
    return credential.digest[:12]


def clean_scopes(value: object) -> list[str]:
    """The requested scopes (a non-empty list of SMSGate scope names); raises InvalidParameter."""
    if not isinstance(value, list) or not value or len(value) > len(SCOPES):
        raise errors.InvalidParameter("`scopes` must be a non-empty list of scope names.", param="scopes")
    unknown = [item for item in value if item not in SCOPES]
    if unknown:
        raise errors.InvalidParameter(f"Unknown scope {str(unknown[0])[:40]!r}.", param="scopes")
    return sorted(set(value))


def _claims(*, jti: str, kind: str, base: TokenClaims, expires_at: datetime) -> dict[str, object]:
    return {
        "jti": jti,
        "typ": kind,
        "acct": base.account_id,
        "sub": f"{base.subject}:{base.subject_id}",
        "fp": base.fingerprint,
        "scopes": sorted(base.scopes),
        "iat": int(timezone.now().timestamp()),
        "exp": int(expires_at.timestamp()),
    }


def issue_token(*, grantor: TokenClaims, ttl: int | None) -> IssuedToken:
    """An access token and its refresh token for `grantor` (jti and kind of `grantor` are
    ignored), the access token valid `ttl` seconds (default an hour, at most 30 days).
    Raises InvalidParameter for a bad ttl."""
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl):
        raise errors.InvalidParameter("`ttl` must be a positive number of seconds.", param="ttl")
    lifetime = min(timedelta(seconds=ttl), MAX_ACCESS_TTL) if ttl else DEFAULT_ACCESS_TTL
    now = timezone.now()
    access_jti, refresh_jti = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    access_expiry, refresh_expiry = now + lifetime, now + max(REFRESH_TTL, lifetime)
    SmsGateToken.objects.bulk_create(
        [
            SmsGateToken(
                jti=access_jti, account_id=grantor.account_id, kind=SmsGateToken.Kind.ACCESS, expires_at=access_expiry
            ),
            SmsGateToken(
                jti=refresh_jti,
                account_id=grantor.account_id,
                kind=SmsGateToken.Kind.REFRESH,
                pair_jti=access_jti,
                expires_at=refresh_expiry,
            ),
        ]
    )
    key = _signing_key()
    access = jwt.encode(_claims(jti=access_jti, kind="access", base=grantor, expires_at=access_expiry), key=key)
    refresh = jwt.encode(_claims(jti=refresh_jti, kind="refresh", base=grantor, expires_at=refresh_expiry), key=key)
    return IssuedToken(jti=access_jti, access_token=access, refresh_token=refresh, expires_at=access_expiry)


def verify_token(*, token: str) -> TokenClaims:
    """The claims of a valid, unrevoked token this server issued; raises InvalidToken."""
    try:
        raw = jwt.decode(token, key=_signing_key(), now=timezone.now().timestamp())
    except jwt.InvalidJwt:
        raise InvalidToken()
    jti, kind, account_id, sub = raw.get("jti"), raw.get("typ"), raw.get("acct"), raw.get("sub")
    scopes, fingerprint = raw.get("scopes"), raw.get("fp")
    if not (isinstance(jti, str) and kind in ("access", "refresh") and isinstance(account_id, int)):
        raise InvalidToken()
    subject, _, subject_id = str(sub).partition(":")
    if subject not in (LOGIN_SUBJECT, KEY_SUBJECT) or not subject_id.isdigit() or not isinstance(scopes, list):
        raise InvalidToken()
    alive = SmsGateToken.objects.filter(
        jti=jti, account_id=account_id, kind=kind, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).exists()
    if not alive:
        raise InvalidToken()
    return TokenClaims(
        jti=jti,
        kind=kind,
        account_id=account_id,
        subject=subject,
        subject_id=int(subject_id),
        fingerprint=str(fingerprint or ""),
        scopes=frozenset(str(scope) for scope in scopes),
    )


def refresh_token(*, claims: TokenClaims, ttl: int | None = None) -> IssuedToken:
    """A new token pair for a refresh token, which is used up (with its access token): of two
    refreshes at once only one wins. Raises InvalidToken."""
    if claims.kind != "refresh":
        raise InvalidToken("A refresh token is needed here.")
    now = timezone.now()
    with transaction.atomic():
        # One conditional UPDATE: a refresh token works once.
        used = SmsGateToken.objects.filter(jti=claims.jti, kind="refresh", revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not used:
            raise InvalidToken()
        pair = SmsGateToken.objects.filter(jti=claims.jti).values_list("pair_jti", flat=True).first()
        SmsGateToken.objects.filter(jti=pair, revoked_at__isnull=True).update(revoked_at=now)
        return issue_token(grantor=claims, ttl=ttl)


def revoke_token(*, account_id: int, jti: str) -> None:
    """Revokes the account's token with this id (an access token takes its refresh token
    along); raises NotFound for an unknown id or another account's."""
    row = SmsGateToken.objects.filter(account_id=account_id, jti=jti[:40]).first()
    if row is None:
        raise errors.NotFound("Unknown token id.")
    now = timezone.now()
    SmsGateToken.objects.filter(account_id=account_id, revoked_at__isnull=True).filter(
        jti__in=[row.jti, row.pair_jti] if row.pair_jti else [row.jti]
    ).update(revoked_at=now)
    SmsGateToken.objects.filter(account_id=account_id, pair_jti=row.jti, revoked_at__isnull=True).update(revoked_at=now)


def active_login(*, credential_id: int, fingerprint: str) -> EnrolmentToken:
    """The login credential a token was issued to, if still active with the same password;
    raises InvalidToken."""
    found = (
        EnrolmentToken.objects.select_related("phone_list")
        .filter(pk=credential_id, revoked_at__isnull=True, phone_list__account__is_active=True)
        .first()
    )
    if found is None or not hmac.compare_digest(login_fingerprint(found), fingerprint):
        raise InvalidToken()
    return found

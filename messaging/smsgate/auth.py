"""Who calls the SMSGate client API, and its errors in SMSGate's shape.

Three credentials, as SMSGate's clients send them:

- `Authorization: Basic login:password`: the login and password that the SMSGate app's
  sign-up returned for a list (`devices/smsgate/services.py`). The caller acts on that list.
- `Authorization: Bearer <Phonefleet API key>`: checked by `accounts.api.ApiKeyAuthentication`
  itself, so every rule of the key applies (revocation, IP allow-list, rate limit, default list).
- `Authorization: Bearer <access token>` issued by `POST /auth/token` (messaging/smsgate/tokens.py),
  limited to its scopes; the login or key it was issued to must still be valid.

Every view of the API subclasses `SmsGateView` and reads `self.caller` (a `Caller`).
Errors are `{"message": …}` with SMSGate's status codes (`smsgate_exception_handler`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts import api as accounts_api
from accounts import errors
from accounts import services as account_services
from accounts.api import (
    ApiKeyAuthentication,
    ApiRequest,
    ApiView,
    JsonOnly,
    enforce_rate_limit,
)
from accounts.services import AuthenticatedKey
from devices.models import EnrolmentToken
from devices.smsgate import services as smsgate_devices
from messaging.services import smsgate_tokens as tokens

# The scope that allows everything (SMSGate's `all:any`); Basic and API-key callers hold it.
ALL_SCOPES = "all:any"

logger = logging.getLogger(__name__)
# Domain error → HTTP status, as SMSGate's server answers. The one table of these routes.
STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.InvalidApiKey: 401,
    smsgate_devices.InvalidCredentials: 401,
    errors.IpNotAllowed: 403,
    errors.TargetNotFound: 400,
    errors.MissingTo: 400,
    errors.MissingMsg: 400,
    errors.InvalidParameter: 400,
    errors.InsufficientCredit: 402,
    errors.SpendingCapReached: 402,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.IdempotencyInProgress: 409,
    errors.IdempotencyMismatch: 422,
    errors.RateLimited: 429,
}


class MissingScope(errors.DomainError):
    """The access token does not carry the scope the operation needs (403)."""

    default_message = "This token does not allow this operation."


STATUS_OF[tokens.InvalidToken] = 401
STATUS_OF[MissingScope] = 403


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the SMSGate API.

    `key` is what Phonefleet's accept path takes: the caller's API key, or for a list's
    login a key-less sender (no `api_key` on its messages) whose default list is that list.
    """

    key: AuthenticatedKey
    # The SMSGate login (Basic, or the login a token was issued to); "" for an API key.
    login: str = ""
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({ALL_SCOPES}))
    # The token's id (jti) and kind ("access" or "refresh") when the call came with one.
    token_id: str = ""
    token_kind: str = ""
    # The login's credential and its password fingerprint (what a token issued to it names).
    credential_id: int | None = None
    fingerprint: str = ""

    @property
    def account_id(self) -> int:
        return self.key.account_id

    @property
    def api_key_id(self) -> int | None:
        """The API key's id; None for a login."""
        return None if self.login else self.key.id

    @property
    def phone_list_id(self) -> int | None:
        """The list the caller acts on: the login's list, or the API key's default list."""
        return self.key.default_list_id

    @property
    def list_scope(self) -> int | None:
        """The list that bounds what the caller may read: a login sees its list only, an
        API key its whole account (None)."""
        return self.key.default_list_id if self.login else None

    def allows(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes

    def grant(self) -> tokens.TokenClaims:
        """What a token issued to this caller names (its jti and kind are set on issue)."""
        if self.login and self.credential_id is not None:
            subject, subject_id = tokens.LOGIN_SUBJECT, self.credential_id
        else:
            subject, subject_id = tokens.KEY_SUBJECT, self.key.id
        return tokens.TokenClaims("", "", self.account_id, subject, subject_id, self.fingerprint, self.scopes)


def login_sender(
    *, account_id: int, login: str, phone_list_id: int, default_list: tuple[str, str, int]
) -> AuthenticatedKey:
    """The sender of a list's login: no API key, the login's list as default list."""
    # AuthenticatedKey.id is typed int; the accept path only copies it into the nullable FK
    # (as messaging.services.subscriptions.account_sender does).
    return AuthenticatedKey(
        None,  # type: ignore[arg-type]
        account_id,
        f"SMSGate login {login}",
        (),
        (),
        phone_list_id,
        None,
        default_list,
    )


def _login_caller(credential: EnrolmentToken, **token: Any) -> Caller:
    phone_list = credential.phone_list
    login = credential.prefix.removeprefix(smsgate_devices.LOGIN_PREFIX)
    key = login_sender(
        account_id=phone_list.account_id,
        login=login,
        phone_list_id=phone_list.pk,
        default_list=(phone_list.token, phone_list.default_country, phone_list.default_ttl_seconds),
    )
    return Caller(
        key=key, login=login, credential_id=credential.pk, fingerprint=tokens.login_fingerprint(credential), **token
    )


def authenticate_login(*, login: str, password: str, ip: str) -> Caller:
    """The caller behind a list's SMSGate login; raises InvalidCredentials, or RateLimited
    after too many wrong passwords from one address."""
    return _login_caller(smsgate_devices.resolve_login(login=login, password=password, ip=ip))


def authenticate_token(*, request: ApiRequest, token: str) -> Caller:
    """The caller behind an access (or refresh) token; an API key's rules apply to calls made
    with a token issued to it. Raises InvalidToken, IpNotAllowed or RateLimited."""
    claims = tokens.verify_token(token=token)
    scoped: dict[str, Any] = {"scopes": claims.scopes, "token_id": claims.jti, "token_kind": claims.kind}
    if claims.subject == tokens.LOGIN_SUBJECT:
        credential = tokens.active_login(credential_id=claims.subject_id, fingerprint=claims.fingerprint)
        if credential.phone_list.account_id != claims.account_id:
            raise tokens.InvalidToken()
        return _login_caller(credential, **scoped)
    try:
        call = account_services.authenticate_api_call_by_id(key_id=claims.subject_id)
    except errors.InvalidApiKey:
        raise tokens.InvalidToken()
    if call.key.account_id != claims.account_id:
        raise tokens.InvalidToken()
    request.api_status_code = account_services.check_ip(key=call.key, ip=request.client_ip)
    request.api_call = call
    enforce_rate_limit(call)
    return Caller(key=call.key, **scoped)


def _basic(value: str) -> tuple[str, str]:
    try:
        login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise smsgate_devices.InvalidCredentials("Malformed Basic credentials.")
    if not sep or not login or not password:
        raise smsgate_devices.InvalidCredentials("Malformed Basic credentials.")
    return login, password


class SmsGateAuthentication(BaseAuthentication):
    """Basic (a list's login), Bearer API key, or Bearer access token; see the module."""

    def authenticate(self, request: Request) -> tuple[None, Caller]:
        assert isinstance(request, ApiRequest)  # made by ApiView.initialize_request
        scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic":
            login, password = _basic(value)
            caller = authenticate_login(login=login, password=password, ip=request.client_ip)
            # A login's calls are limited as an API key's without a limit of its own.
            calls = account_services.count_call_this_minute(name=f"smsgate-login:{caller.credential_id}")
            try:
                enforce_rate_limit(account_services.ApiCall(caller.key, calls))
            except errors.RateLimited as exc:
                limit = caller.key.rate_limit_per_minute or accounts_api.DEFAULT_RATE_LIMIT_PER_MINUTE
                raise errors.RateLimited(
                    f"This login may make {limit} requests per minute.", retry_after=exc.retry_after
                )
        elif scheme == "bearer" and value.startswith(account_services.API_KEY_PREFIX + "_"):
            # The API-key path itself: key, IP rule, the call counted for the rate limit.
            _user, key = ApiKeyAuthentication().authenticate(request)
            enforce_rate_limit(request.api_call)
            caller = Caller(key=key)
        elif scheme == "bearer" and value:
            caller = authenticate_token(request=request, token=value)
        else:
            raise drf_exceptions.NotAuthenticated(
                "Authenticate with Basic login:password or a Bearer API key or token."
            )
        return (None, caller)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="smsgate"'


def smsgate_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error of these routes as SMSGate answers it: `{"message": …}` and its status."""
    unusable = errors.input_error(exc)
    if unusable is not None:
        # The request's fault, but past the view's checks: kept in the log to close the gap.
        logger.warning("refused unusable input: %s", unusable, exc_info=exc)
        return Response({"message": unusable}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"message": "The request body is larger than this server accepts."}, status=413)
    if isinstance(exc, errors.DomainError):
        status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 400)
        response = Response({"message": exc.message}, status=status)
        if isinstance(exc, errors.RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        if status == 401:
            response["WWW-Authenticate"] = 'Basic realm="smsgate"'
        return response
    if isinstance(exc, drf_exceptions.APIException):
        response = Response({"message": _detail_text(exc.detail)}, status=exc.status_code)
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            response.status_code = 401
            response["WWW-Authenticate"] = 'Basic realm="smsgate"'
        return response
    if isinstance(exc, Http404):
        return Response({"message": "Not found."}, status=404)
    return None


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(
            _detail_text(value) if name in ("detail", "non_field_errors") else f"{name}: {_detail_text(value)}"
            for name, value in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(_detail_text(item) for item in detail)
    return str(detail)


class SmsGateView(ApiView):
    """Base of every SMSGate client API view: the caller in `self.caller`, plain JSON
    (no envelope), SMSGate's errors. `required_scopes` names the token scope each method
    needs (`{"GET": "messages:read"}`); Basic and API-key callers hold every scope."""

    authentication_classes = [SmsGateAuthentication]
    renderer_classes = [JSONRenderer]
    # JSON only, by the project's JSON parser (the first of REST_FRAMEWORK's parsers).
    parser_classes = [cast(type[BaseParser], api_settings.DEFAULT_PARSER_CLASSES[0])]  # imported by DRF
    content_negotiation_class = JsonOnly
    required_scopes: ClassVar[dict[str, str]] = {}
    # Only the refresh operation takes a refresh token.
    takes_refresh_token: ClassVar[bool] = False

    def get_exception_handler(self) -> Any:
        return smsgate_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        caller = request.auth
        if not isinstance(caller, Caller):
            raise drf_exceptions.NotAuthenticated("Authentication credentials were not provided.")
        if caller.token_kind and (caller.token_kind == "refresh") != self.takes_refresh_token:
            raise tokens.InvalidToken(
                "This takes a refresh token." if self.takes_refresh_token else "Use an access token here."
            )
        scope = self.required_scopes.get(request.method or "")
        if scope and not caller.allows(scope):
            raise MissingScope(f"This token lacks the `{scope}` scope.")

    @property
    def caller(self) -> Caller:
        caller = self.request.auth
        assert isinstance(caller, Caller)  # `initial` refused the call otherwise
        return caller


def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under the API's prefix: SMSGate's 404."""
    return JsonResponse({"message": "Not found."}, status=404)

"""Client IP detection, CORS for the public API, a 400 for input no view can use, and the
panel's sign-in middlewares kept off the public API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.deprecation import MiddlewareMixin

from accounts import errors
from accounts.envelope import error_for_path
from accounts.lib.ipnet import client_ip

logger = logging.getLogger(__name__)

# The public API's paths: every call carries its API key, none has a session or a cookie.
API_PREFIXES = ("/api/v1/", "/tools/api.pl")


class ClientRequest(HttpRequest):
    """Every request, as the views see it after these middlewares."""

    # Set by ClientIpMiddleware.
    client_ip: str
    # Set by the API-key check, for ApiCorsMiddleware's answer.
    cors_origins: tuple[str, ...]


class ClientIpMiddleware:
    """Sets `request.client_ip`: the socket's address unless trusted proxies say otherwise."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: ClientRequest) -> HttpResponse:
        request.client_ip = client_ip(
            request.META.get("REMOTE_ADDR", ""),
            request.META.get("HTTP_X_FORWARDED_FOR"),
            settings.TRUSTED_PROXY_COUNT,
            settings.TRUSTED_PROXIES,
        )
        return self.get_response(request)


class ApiCorsMiddleware:
    """CORS for `/api/v1/` and `/tools/api.pl`, by the calling key's own origins.

    A preflight cannot carry the key, so it is answered for any origin; the real call's
    answer carries `Access-Control-Allow-Origin` only when the key lists that origin
    (the view records the key's origins on the request).
    """

    PREFIXES = API_PREFIXES

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # From META: `request.headers` copies every header into a new mapping on first use.
        origin = request.META.get("HTTP_ORIGIN")
        if not origin or not request.path.startswith(self.PREFIXES):
            return self.get_response(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Idempotency-Key"
            response["Access-Control-Max-Age"] = "600"
            response["Vary"] = "Origin"
            return response
        response = self.get_response(request)
        allowed = getattr(request, "cors_origins", ())
        if origin in allowed or "*" in allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Vary"] = "Origin"
        return response


class ContentSecurityPolicyMiddleware:
    """Sends `settings.CONTENT_SECURITY_POLICY` with every HTML page (the panel, sign-in,
    the admin): scripts and styles come only from our own static files, so markup that
    slipped past escaping cannot run. The API docs page is left out: Swagger UI needs
    inline scripts and styles (docs/deploy.md, "Limits")."""

    EXEMPT_PREFIXES = ("/api/docs/",)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if (
            policy
            and "Content-Security-Policy" not in response
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith(self.EXEMPT_PREFIXES)
        ):
            response["Content-Security-Policy"] = policy
        return response


class InputErrorMiddleware:
    """A clear 400, never a 500, for input that no view can use, on every HTTP route.

    - A NUL in the path (`%00`): no id holds one, and PostgreSQL cannot even compare text
      with it, so the request stops here, before any lookup.
    - What `errors.input_error` recognises, raised past a view's checks (the panel's pages and
      the plain views; the API's views answer these themselves, in the envelope).

    The answer has the shape of the path's clients: the API envelope, the SMSGate app's
    `{"message": …}`, or a sentence for the panel. Any other exception is left alone: a bug
    stays a 500, logged as one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return self.refuse(request, "The address must not contain NUL characters (%00).")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        sentence = errors.input_error(exception)
        if sentence is None:
            return None
        # The request's fault, but past the view's checks: kept in the log to close the gap.
        logger.warning("refused unusable input on %s: %s", request.path, sentence, exc_info=exception)
        return self.refuse(request, sentence)

    def refuse(self, request: HttpRequest, sentence: str) -> HttpResponse:
        answer = error_for_path(request.path, 400, sentence)
        return answer or HttpResponseBadRequest(sentence, content_type="text/plain; charset=utf-8")


class PanelOnly(MiddlewareMixin):
    """Runs one of Django's middlewares for the panel's sign-in (subclassed beside this) on
    every path but the public API's. The API's views authenticate by key, are exempt from
    CSRF and never read the session, the user or flash messages; making the session store,
    the lazy user and the message storages and reading the CSRF cookie for each send only
    cost its CPU (about 5 % in one process)."""

    def __call__(self, request: HttpRequest) -> Any:
        if request.path.startswith(API_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)


class PanelSessionMiddleware(PanelOnly, SessionMiddleware):
    pass


class PanelAuthenticationMiddleware(PanelOnly, AuthenticationMiddleware):
    pass


class PanelMessageMiddleware(PanelOnly, MessageMiddleware):
    pass


class PanelCsrfMiddleware(PanelOnly, CsrfViewMiddleware):
    def process_view(
        self, request: HttpRequest, callback: Callable[..., Any], callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseForbidden | None:
        if request.path.startswith(API_PREFIXES):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)

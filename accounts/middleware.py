"""Client IP detection and CORS for the public API."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.lib.ipnet import client_ip


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

    PREFIXES = ("/api/v1/", "/tools/api.pl")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
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

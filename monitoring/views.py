"""Operations endpoints (SPEC "Operations"): liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from accounts.lib.ipnet import parse_address
from monitoring import exposition, health


@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """The process answers HTTP; nothing else is asked (restart it if this fails)."""
    return JsonResponse({"status": "alive"})


@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and a worker are there; 503 naming what is not."""
    checks = health.readiness()
    ok = all(check.ok for check in checks.values())
    body = {
        "status": "ready" if ok else "not ready",
        "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
    }
    return JsonResponse(body, status=200 if ok else 503)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text, for the operator's token or, without one, for loopback callers."""
    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(exposition.scrape(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        refusal = HttpResponse("/metrics needs `Authorization: Bearer <METRICS_TOKEN>`.\n", status=401)
        refusal["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refusal
    # The client as the API sees it: a forged X-Forwarded-For counts only behind trusted proxies.
    address = parse_address(request.client_ip)  # type: ignore[attr-defined]
    if address is not None and address.is_loopback:
        return None
    return HttpResponse(
        "/metrics answers loopback callers only; set METRICS_TOKEN to scrape it from elsewhere.\n", status=403
    )

"""Operations endpoints (SPEC "Operations"): liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lib.ipnet import parse_address
from messaging.smsgate.auth import smsgate_exception_handler
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


# SMSGate's health checks (`/3rdparty/v1/health…`): readiness check → (SMSGate check name,
# status when it fails). A missing worker delays callbacks and expiry but messages are still
# accepted and sent, so it is a warning there.
SMSGATE_CHECKS = {
    "database": ("db:ping", "fail"),
    "redis": ("redis:ping", "fail"),
    "worker": ("worker:heartbeat", "warn"),
}
SMSGATE_STATUS_ORDER = ("pass", "warn", "fail")
# What SMSGate's health answer names as the server's version.
SMSGATE_VERSION = "phonefleet"


class SmsGateHealthCheckSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=SMSGATE_STATUS_ORDER)
    description = serializers.CharField()
    observedValue = serializers.IntegerField()
    observedUnit = serializers.CharField()


class SmsGateHealthSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=SMSGATE_STATUS_ORDER)
    version = serializers.CharField()
    releaseId = serializers.IntegerField()
    checks = serializers.DictField(child=SmsGateHealthCheckSerializer())


def smsgate_health_body(checks: dict[str, health.Check]) -> dict[str, Any]:
    """SMSGate's health answer (`{status, version, releaseId, checks}`) for these checks."""
    named = {}
    for name, check in checks.items():
        label, failing = SMSGATE_CHECKS.get(name, (name, "fail"))
        named[label] = {
            "status": "pass" if check.ok else failing,
            "description": check.detail,
            "observedValue": 1 if check.ok else 0,
            "observedUnit": "",
        }
    status = max((check["status"] for check in named.values()), key=SMSGATE_STATUS_ORDER.index, default="pass")
    return {"status": status, "version": SMSGATE_VERSION, "releaseId": 1, "checks": named}


class SmsGateHealthApi(APIView):
    """SMSGate's health probes, no credentials needed (503 when failing): `live` asks
    nothing, `startup` the database, `ready` (and plain `/health`) everything."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    probe = "ready"

    def get_exception_handler(self) -> Any:
        return smsgate_exception_handler

    @extend_schema(
        tags=["SMSGate client API"], auth=[], responses={200: SmsGateHealthSerializer, 503: SmsGateHealthSerializer}
    )
    def get(self, request: Request) -> Response:
        if self.probe == "live":
            checks: dict[str, health.Check] = {}
        elif self.probe == "startup":
            checks = {"database": health.check_database()}
        else:
            checks = health.readiness()
        body = smsgate_health_body(checks)
        answer = Response(body, status=503 if body["status"] == "fail" else 200)
        add_never_cache_headers(answer)
        return answer


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

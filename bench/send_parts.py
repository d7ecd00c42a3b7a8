"""Where a single send's CPU goes, in one process: the parts of `POST /api/v1/send`.

    .venv/bin/python bench/send_parts.py

Sets up a fresh PostgreSQL database (`phonefleet_parts`, dropped and re-created) and Redis
db 13, then calls each part many times in this process and prints its CPU time per call
(best and median of 5 batches): the whole send view through a `RequestFactory` (no
middleware, no HTTP), the same for a DRF view that does nothing with and without the API
key check, a plain Django view, and the send's own steps, and what counting them for
/metrics costs; then a verification's start and check views (`POST /api/v1/verify`,
`/verify/check`). Counters are kept as production keeps them, in PROMETHEUS_MULTIPROC_DIR
files (a temporary folder unless that variable is set). Environment: PARTS_DATABASE_URL,
PARTS_REDIS_URL.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import base_env, flush_redis, machine_speed, manage, reset_database

DB_URL = os.environ.get("PARTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonefleet_parts")
REDIS_URL = os.environ.get("PARTS_REDIS_URL", "redis://127.0.0.1:6379/13")


def per_call(name: str, work: Callable[[], object], calls: int = 1000) -> None:
    for _ in range(50):
        work()
    batches = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls // 5):
            work()
        batches.append((time.process_time() - started) / (calls // 5) * 1e6)
    batches.sort()
    print(f"{name:48s} {batches[0]:7.0f} µs   (median {batches[2]:7.0f})")


def main() -> None:
    reset_database(DB_URL)
    flush_redis(REDIS_URL)
    os.environ.update(base_env(DB_URL, REDIS_URL))
    manage(dict(os.environ), "migrate", "--noinput")
    own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if own_metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="phonefleet-parts-")

    import django

    django.setup()
    from django.http import HttpRequest, JsonResponse
    from django.test import RequestFactory
    from django.utils import timezone
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from accounts import metrics as account_metrics
    from accounts import services as account_services
    from accounts.api import ApiKeyView
    from accounts.models import ApiKey
    from devices.models import Device
    from devices.selectors import online_devices
    from messaging import metrics
    from messaging.api.common import represent_with, validate_with
    from messaging.api.send import SendMessageApi
    from messaging.models import Message
    from messaging.services import accept, offers
    from tests import factories

    account = factories.make_account(credit=10**9)
    phone_list = factories.make_list(account=account)
    factories.make_device(phone_list=phone_list, online=True)
    key_row, secret = account_services.create_api_key(account=account, name="parts", default_list=phone_list)
    ApiKey.objects.filter(pk=key_row.pk).update(rate_limit_per_minute=10**9)
    Device.objects.update(last_seen_at=timezone.now())
    key = account_services.authenticate_api_key(secret=secret)
    target = accept.resolve_target(key=key, list_token=None, device_id=None)
    options = accept.check_options(target=target, sim=None, ttl=None, send_at=None)

    factory = RequestFactory()
    body = urlencode({"api_key": secret, "to": "+393331234567", "msg": "Benchmark"})

    def request() -> HttpRequest:
        made = factory.post("/api/v1/send", body, content_type="application/x-www-form-urlencoded")
        made.client_ip = "127.0.0.1"  # type: ignore[attr-defined]
        return made

    class Nothing(APIView):
        authentication_classes: list[type] = []

        def post(self, request: Request) -> Response:
            return Response({})

    class KeyOnly(ApiKeyView):
        def post(self, request: Request) -> Response:
            return Response({})

    def plain(request: HttpRequest) -> JsonResponse:
        return JsonResponse({})

    def build() -> accept.NewMessage:
        return accept.build_message(
            key=key, target=target, to="+393331234567", text="Benchmark", ref="", options=options
        )

    def store() -> None:
        accept.store_messages(account_id=key.account_id, messages=[build()], reason="SMS", records_of=target)

    send, nothing, key_only = SendMessageApi.as_view(), Nothing.as_view(), KeyOnly.as_view()
    sample = build()
    print(f"Python loop yardstick {machine_speed():.0f} ms; CPU per call, best of 5 batches:")
    per_call("send view (RequestFactory, no middleware)", lambda: send(request()).render())  # type: ignore[attr-defined]
    per_call("DRF view doing nothing", lambda: nothing(request()).render())  # type: ignore[attr-defined]
    per_call("the same with the API-key check", lambda: key_only(request()).render())  # type: ignore[attr-defined]
    per_call("plain Django view", lambda: plain(request()))
    per_call(
        "  API-key script (key, call count, last use)", lambda: account_services.authenticate_api_call(secret=secret)
    )
    per_call(
        "  validate the parameters", lambda: validate_with(SendMessageApi.InputSerializer, {"to": "+39333", "msg": "x"})
    )
    per_call("  build the message (number, parts, id)", build)
    per_call("  build + accepting statement with records", store)
    per_call("  online phones as a query of its own", lambda: online_devices(phone_list_id=phone_list.pk))
    per_call("  the offer's PUBLISH", lambda: offers.offer_message(message=sample))
    per_call(
        "  render the answer",
        lambda: represent_with(SendMessageApi.OutputSerializer, accept.AcceptedMessage(sample, [])),
    )

    def count_accept() -> None:
        metrics.count_accepted(count=1)
        account_metrics.count_debits(entries=1, credits=1)

    per_call("  count the accept and its debit (/metrics)", count_accept)
    now = timezone.now()
    per_call(
        "  count a claim and its dispatch latency",
        lambda: metrics.count_assignment(due_at=now, assigned_at=now, attempt=1),
    )
    verify_parts(secret=secret, key_row=key_row, request_to=factory.post)
    Message.objects.filter(status__in=["queued", "assigned"]).update(status="cancelled")
    if own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def verify_parts(*, secret: str, key_row: Any, request_to: Callable[..., Any]) -> None:
    """CPU per call of a verification's start (a send plus the code, the seal, the key's
    row lock and the limits' reads) and of a wrong-code check (each on its own verification)."""
    import itertools

    from messaging.api.verify import VerifyCheckApi, VerifyStartApi
    from messaging.models import Verification, VerificationPolicy

    VerificationPolicy.objects.create(api_key=key_row, per_hour=100_000, number_interval_seconds=0)
    numbers = (f"+39333{n:07d}" for n in itertools.count())

    def posted(path: str, fields: dict[str, str]) -> Any:
        made = request_to(
            path, urlencode({"api_key": secret, **fields}), content_type="application/x-www-form-urlencoded"
        )
        made.client_ip = "127.0.0.1"
        return made

    start, check = VerifyStartApi.as_view(), VerifyCheckApi.as_view()
    per_call("verify start view", lambda: start(posted("/api/v1/verify", {"to": next(numbers)})).render())  # type: ignore[attr-defined]
    pending = iter(Verification.objects.filter(status="pending").values_list("public_id", flat=True))
    per_call(
        "verify check view (a wrong code)",
        lambda: check(posted("/api/v1/verify/check", {"verification_id": next(pending), "code": "x"})).render(),  # type: ignore[attr-defined]
    )


if __name__ == "__main__":
    main()

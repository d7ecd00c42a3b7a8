"""The SMSGate app's private-server API (`/api/mobile/v1`): thin views over
`devices.smsgate.services`.

Plain JSON (no send-API envelope), bare arrays where the app expects them, nulls
omitted, and 401 only where the app must re-register or sign in again.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import errors
from accounts.parsers import JsonParser
from devices.models import Device
from devices.smsgate import services, wire
from messaging.models import Message

logger = logging.getLogger(__name__)

UNAUTHORIZED = (services.InvalidDeviceToken, services.InvalidCredentials)


def mobile_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Errors as the official server shapes them (`{"message": …}`); the app reads only the status."""
    if isinstance(exc, UNAUTHORIZED):
        return Response({"message": exc.message}, status=401)
    if isinstance(exc, errors.RateLimited):
        return Response({"message": exc.message}, status=429, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, errors.DomainError):
        return Response({"message": exc.message}, status=400)
    if isinstance(exc, drf_exceptions.APIException):
        return Response({"message": str(exc.detail)}, status=exc.status_code)
    unusable = errors.input_error(exc)
    if unusable is not None:
        # The request's fault, but past the view's checks: kept in the log to close the gap.
        logger.warning("refused unusable input: %s", unusable, exc_info=exc)
        return Response({"message": unusable}, status=400)
    return None


def _credentials(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower(), value.strip()


def _user_agent(request: Request | HttpRequest) -> str:
    return request.headers.get("User-Agent", "")


def _client_ip(request: Request) -> str:
    return getattr(request, "client_ip", "") or request.META.get("REMOTE_ADDR", "")


def _basic(value: str) -> tuple[str, str]:
    try:
        login, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise services.InvalidCredentials()
    return login, password


def authenticate_phone(request: Request | HttpRequest) -> Device:
    """The phone behind `Authorization: Bearer <device token>`; raises InvalidDeviceToken."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return services.authenticate_device_token(token=value.strip() if scheme.lower() == "bearer" else None)


class MobileView(APIView):
    """Base of every mobile endpoint: no session, no envelope, the app's error shape."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    parser_classes = [JsonParser]
    # The app's wire format (docs/android.md), not part of the public OpenAPI schema.
    schema = None

    def get_exception_handler(self) -> Any:
        return mobile_exception_handler

    def phone(self, request: Request) -> Device:
        return authenticate_phone(request)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise drf_exceptions.ParseError("A JSON object is expected.")
    return data


class DeviceApi(MobileView):
    """`POST /device` registers a phone (private token, Basic or one-time code);
    `PATCH /device` refreshes it; `GET /device` tells it its public address."""

    def post(self, request: Request) -> Response:
        body = _object(request.data)
        scheme, value = _credentials(request)
        if scheme == "bearer":
            credential = services.resolve_private_token(secret=value)
        elif scheme == "basic":
            login, password = _basic(value)
            credential = services.resolve_login(login=login, password=password, ip=_client_ip(request))
        elif scheme == "code":
            credential = services.resolve_login_code(code=value, ip=_client_ip(request))
        else:
            raise services.InvalidCredentials()
        registration = services.register_device(
            credential=credential,
            name=str(body.get("name") or ""),
            sims=body.get("simCards"),
            app_version=wire.app_version_string(_user_agent(request)),
        )
        answer = {"id": registration.device.public_id, "token": registration.token, "login": registration.login}
        if registration.password is not None:
            answer["password"] = registration.password
        return Response(answer, status=201)

    def patch(self, request: Request) -> Response:
        device = self.phone(request)
        body = _object(request.data)
        services.update_device(
            device=device,
            name=body.get("name"),
            sims=body.get("simCards"),
            app_version=wire.app_version_string(_user_agent(request)),
        )
        return Response(status=204)

    def get(self, request: Request) -> Response:
        answer: dict[str, Any] = {"externalIp": _client_ip(request)}
        if request.headers.get("Authorization"):
            device = self.phone(request)
            answer["device"] = {
                "id": device.public_id,
                "name": device.name,
                "createdAt": wire.format_datetime(device.created_at),
                "lastSeen": wire.format_datetime(device.last_seen_at or device.created_at),
            }
        return Response(answer)


def job_json(message: Message) -> dict[str, Any]:
    """One item of `GET /message`, as the app reads it (nulls omitted, millisecond dates)."""
    item: dict[str, Any] = {
        "id": message.public_id,
        "textMessage": {"text": message.text},
        # Apps up to v1.39.0 read the text from `message` (the reference server sends both).
        "message": message.text,
        "phoneNumbers": [message.to],
        "withDeliveryReport": True,
        "priority": 0,
        "validUntil": wire.format_datetime(message.expires_at),
        "createdAt": wire.format_datetime(message.created_at),
    }
    if message.sim:
        item["simNumber"] = message.sim
    return item


class MessageApi(MobileView):
    """`GET /message` hands the phone its work (fetching claims); `PATCH /message`
    takes its state reports."""

    def get(self, request: Request) -> Response:
        # `order` is not read: the queue is offered oldest first (services.fetch_jobs).
        jobs = services.fetch_jobs(device=self.phone(request))
        return Response([job_json(message) for message in jobs])

    def patch(self, request: Request) -> Response:
        device = self.phone(request)
        patches = request.data if isinstance(request.data, list) else [request.data]
        services.report_states(device=device, patches=patches, app_version=wire.app_version(_user_agent(request)))
        return Response(status=204)


class SettingsApi(MobileView):
    """`GET /settings`: sections the app applies (signing key, SSE-only wake-ups)."""

    def get(self, request: Request) -> Response:
        return Response(services.device_settings(device=self.phone(request)))


def receiver_url(request: Request | HttpRequest, device: Device) -> str:
    """Absolute URL of our webhook receiver for this phone (SITE_URL when set)."""
    path = reverse("smsgate-webhook", args=[device.public_id])
    site: str = settings.SITE_URL
    if site:
        return site.rstrip("/") + path
    url: str = request.build_absolute_uri(path)
    return url


class WebhooksApi(MobileView):
    """`GET /webhooks`: the phone's webhooks, all pointing at our receiver."""

    def get(self, request: Request) -> Response:
        device = self.phone(request)
        return Response(services.device_webhooks(device=device, receiver_url=receiver_url(request, device)))


class UserCodeApi(MobileView):
    """`GET /user/code` (Basic login:password): a one-time code to enrol another phone."""

    def get(self, request: Request) -> Response:
        scheme, value = _credentials(request)
        if scheme != "basic":
            raise services.InvalidCredentials()
        login, password = _basic(value)
        credential = services.resolve_login(login=login, password=password, ip=_client_ip(request))
        code, valid_until = services.issue_login_code(credential=credential)
        return Response({"code": code, "validUntil": wire.format_datetime(valid_until)})


class UserPasswordApi(MobileView):
    """`PATCH /user/password` (device token): the app's change-password screen, for the
    login of the phone's list whose password is `currentPassword`."""

    def patch(self, request: Request) -> Response:
        body = _object(request.data)
        current, new = body.get("currentPassword"), body.get("newPassword")
        if not isinstance(current, str) or not isinstance(new, str):
            raise errors.InvalidParameter("`currentPassword` and `newPassword` are required strings.")
        services.change_password(device=self.phone(request), current=current, new=new, ip=_client_ip(request))
        return Response(status=204)


@csrf_exempt
@require_POST
def webhook_receiver(request: HttpRequest, device_id: str) -> HttpResponse:
    """Receives the phone's signed webhooks; 401 for a bad or stale signature (the phone
    retries), 400 for a value out of range."""
    try:
        accepted = services.receive_webhook(
            device_public_id=device_id,
            body=request.body,
            timestamp=request.headers.get("X-Timestamp", ""),
            signature=request.headers.get("X-Signature", ""),
        )
    except errors.InvalidParameter as exc:
        return JsonResponse({"message": exc.message}, status=400)
    if not accepted:
        return JsonResponse({"message": "Bad signature."}, status=401)
    return JsonResponse({})

"""The public IPN API: settings, secret rotation, test event, delivery log, replays.

Every view derives from `ApiKeyView` (key → code 3, IP → code 4, rate limit, envelope)
and works on the key's own account only.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView, ApiRequest
from ipn import selectors, services
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def _first_error(serializer: serializers.Serializer[Any]) -> str:
    field, messages = next(iter(serializer.errors.items()))
    text = messages[0] if isinstance(messages, list) else str(messages)
    return f"`{field}`: {text}"


class EndpointSerializer(serializers.Serializer[Any]):
    url = serializers.CharField()
    enabled = serializers.BooleanField()
    events = serializers.ListField(child=serializers.CharField())
    format = serializers.CharField()
    secret = serializers.CharField()
    active = serializers.SerializerMethodField()
    disabled_reason = serializers.CharField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    failing_since = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)

    def get_active(self, endpoint: IpnEndpoint) -> bool:
        """True when callbacks go out: enabled, a URL, not disabled for failing."""
        return endpoint.enabled and bool(endpoint.url) and endpoint.disabled_at is None


class AttemptSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    url = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    outcome = serializers.CharField()
    error = serializers.CharField()
    retry_after = serializers.IntegerField(allow_null=True)
    response_body = serializers.CharField()
    is_replay = serializers.BooleanField()
    is_test = serializers.BooleanField()


class EventSerializer(serializers.Serializer[Any]):
    webhook_id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    message_id = serializers.CharField(source="message.public_id", default=None, allow_null=True)
    occurred_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.SerializerMethodField()
    content_type = serializers.CharField()
    body = serializers.CharField()
    attempts = AttemptSerializer(many=True, source="attempts_log")

    def get_next_attempt_at(self, event: IpnEvent) -> str | None:
        pending = event.status == IpnEvent.Status.PENDING
        return serializers.DateTimeField().to_representation(event.next_attempt_at) if pending else None


class EventListSerializer(serializers.Serializer[Any]):
    events = EventSerializer(many=True)


class IpnSettingsApi(ApiKeyView):
    """Read or change the account's IPN settings; the answer includes the current secret."""

    class InputSerializer(serializers.Serializer[Any]):
        url = serializers.CharField(required=False, allow_blank=True, max_length=1000, trim_whitespace=True)
        enabled = serializers.BooleanField(required=False)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=services.ALL_EVENT_TYPES), required=False, allow_empty=True
        )
        format = serializers.ChoiceField(choices=IpnEndpoint.Format.values, required=False)

    @extend_schema(operation_id="ipn_get", parameters=[API_KEY_PARAMETER], responses=EndpointSerializer)
    def get(self, request: ApiRequest) -> Response:
        endpoint = services.get_or_create_endpoint(account=self.get_account())
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="ipn_update",
        parameters=[API_KEY_PARAMETER],
        request=InputSerializer,
        responses=EndpointSerializer,
        description="Fields left out keep their value. `events` is a list (empty = all event types); "
        "form posts may repeat `events` or give one comma-separated value.",
    )
    def put(self, request: ApiRequest) -> Response:
        serializer = self.InputSerializer(data=_settings_input(request))
        if not serializer.is_valid():
            raise errors.InvalidParameter(_first_error(serializer))
        endpoint = services.update_endpoint(account=self.get_account(), **serializer.validated_data)
        return Response(EndpointSerializer(endpoint).data)


def _settings_input(request: ApiRequest) -> dict[str, Any]:
    """The PUT body as a dict; `events` from a form may be repeated or comma-separated."""
    data = request.data
    if isinstance(data, QueryDict):
        result: dict[str, Any] = {k: v for k, v in data.items() if k != "events"}
        if "events" in data:
            result["events"] = [e.strip() for v in data.getlist("events") for e in v.split(",") if e.strip()]
        return result
    if not isinstance(data, dict):
        raise errors.InvalidParameter("The body must be a JSON object or a form.")
    if isinstance(data.get("events"), str):
        data = {**data, "events": [e.strip() for e in data["events"].split(",") if e.strip()]}
    return data


class IpnRotateSecretApi(ApiKeyView):
    """Replace the signing secret; the old one keeps signing beside it for 24 hours."""

    @extend_schema(
        operation_id="ipn_rotate_secret", parameters=[API_KEY_PARAMETER], request=None, responses=EndpointSerializer
    )
    def post(self, request: ApiRequest) -> Response:
        endpoint = services.rotate_secret(account=self.get_account())
        return Response(EndpointSerializer(endpoint).data)


class IpnTestApi(ApiKeyView):
    """Send a `test` event now and show the receiver's answer."""

    class OutputSerializer(serializers.Serializer[Any]):
        webhook_id = serializers.CharField(source="event.webhook_id")
        attempt = AttemptSerializer(source="*")

    @extend_schema(operation_id="ipn_test", parameters=[API_KEY_PARAMETER], request=None, responses=OutputSerializer)
    def post(self, request: ApiRequest) -> Response:
        attempt: IpnAttempt = services.send_test_event(account=self.get_account())
        return Response(self.OutputSerializer(attempt).data)


class IpnEventListApi(ApiKeyView):
    """The delivery log: recent events, newest first, each with every attempt."""

    class OutputSerializer(serializers.Serializer[Any]):
        events = EventSerializer(many=True)

    @extend_schema(
        operation_id="ipn_events",
        parameters=[
            API_KEY_PARAMETER,
            OpenApiParameter("limit", int, required=False, description=f"1–{MAX_PAGE_SIZE}, default 50"),
            OpenApiParameter("status", str, required=False, enum=IpnEvent.Status.values),
            OpenApiParameter("type", str, required=False),
        ],
        responses=OutputSerializer,
    )
    def get(self, request: ApiRequest) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit") or DEFAULT_PAGE_SIZE)
        except ValueError:
            raise errors.InvalidParameter("`limit` must be a whole number.")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise errors.InvalidParameter(f"`limit` must be between 1 and {MAX_PAGE_SIZE}.")
        status = params.get("status") or None
        if status is not None and status not in IpnEvent.Status.values:
            raise errors.InvalidParameter("Unknown `status`.")
        events = selectors.recent_events(
            account_id=self.key.account_id, limit=limit, status=status, type=params.get("type") or None
        )
        return Response(EventListSerializer({"events": events}).data)


class IpnReplayApi(ApiKeyView):
    """Deliver one event again now, with its original `webhook-id`."""

    @extend_schema(
        operation_id="ipn_replay", parameters=[API_KEY_PARAMETER], request=None, responses=IpnTestApi.OutputSerializer
    )
    def post(self, request: ApiRequest, webhook_id: str) -> Response:
        attempt = services.replay_event(account=self.get_account(), webhook_id=webhook_id)
        return Response(IpnTestApi.OutputSerializer(attempt).data)


class IpnReplayFailedApi(ApiKeyView):
    """Queue again every event that failed (or was skipped while disabled) since a time."""

    class InputSerializer(serializers.Serializer[Any]):
        since = serializers.DateTimeField()

    class OutputSerializer(serializers.Serializer[Any]):
        queued = serializers.IntegerField()

    @extend_schema(
        operation_id="ipn_replay_failed",
        parameters=[API_KEY_PARAMETER],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: ApiRequest) -> Response:
        serializer = self.InputSerializer(data=request.data if hasattr(request.data, "get") else {})
        if not serializer.is_valid():
            raise errors.InvalidParameter(_first_error(serializer))
        queued = services.replay_failed_since(account=self.get_account(), since=serializer.validated_data["since"])
        return Response({"queued": queued})

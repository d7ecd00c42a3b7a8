"""Reading and managing messages (detail, cancel, list), and the account's lists,
devices and inbox."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView, ApiRequest
from devices.models import Device, PhoneList
from messaging import selectors
from messaging.api.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, first_error, ok, request_params
from messaging.models import InboundSms, Message
from messaging.services import accept


class MessageSerializer(serializers.Serializer[Any]):
    message_id = serializers.CharField(source="public_id")
    status = serializers.CharField()
    to = serializers.CharField()
    msg = serializers.CharField(source="text")
    parts = serializers.IntegerField()
    encoding = serializers.CharField()
    cost = serializers.IntegerField()
    ref = serializers.CharField()
    list = serializers.CharField(source="phone_list.token", default=None, allow_null=True)
    device_id = serializers.CharField(source="device.public_id", default=None, allow_null=True)
    device_name = serializers.CharField(source="device.name", default=None, allow_null=True)
    sim = serializers.IntegerField(allow_null=True)
    batch_id = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    send_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    assigned_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)


class TimelineEntrySerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    at = serializers.DateTimeField()
    device_id = serializers.CharField(allow_null=True)
    detail = serializers.CharField()


def timeline(message: Message) -> list[dict[str, Any]]:
    """Acceptance (the row's creation) followed by every stored transition."""
    entries: list[dict[str, Any]] = [
        {"status": Message.Status.QUEUED, "at": message.created_at, "device_id": None, "detail": "accepted"}
    ]
    for event in message.events.select_related("device").order_by("at", "id"):
        entries.append(
            {
                "status": event.status,
                "at": event.at,
                "device_id": event.device.public_id if event.device else None,
                "detail": event.detail,
            }
        )
    return entries


# --- Read and manage messages ------------------------------------------------------


class MessageDetailApi(ApiKeyView):
    """One message: status, timeline, phone, parts, cost and your `ref`."""

    class OutputSerializer(MessageSerializer):
        timeline = TimelineEntrySerializer(many=True)

    @extend_schema(operation_id="message_detail", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: ApiRequest, message_id: str) -> Response:
        message = selectors.get_message_for_account(account_id=self.key.account_id, message_id=message_id)
        entries = TimelineEntrySerializer(timeline(message), many=True).data
        return ok(request, {**MessageSerializer(message).data, "timeline": entries})


class CancelMessageApi(ApiKeyView):
    """Cancels a message that is still queued, and gives its credit back."""

    OutputSerializer = MessageSerializer

    @extend_schema(
        operation_id="message_cancel", parameters=[API_KEY_PARAMETER], request=None, responses=MessageSerializer
    )
    def post(self, request: ApiRequest, message_id: str) -> Response:
        message = accept.cancel_message(account_id=self.key.account_id, message_id=message_id)
        return ok(request, self.OutputSerializer(message).data)


class MessageListApi(ApiKeyView):
    """The account's messages, newest first, with filters and cursor pagination."""

    class FilterSerializer(serializers.Serializer[Any]):
        status = serializers.ChoiceField(choices=Message.Status.choices, required=False)
        list = serializers.CharField(required=False, allow_blank=True, help_text="List token.")
        ref = serializers.CharField(required=False)
        # "from" is a Python keyword, so the field is declared in __init__ below.
        until = serializers.DateTimeField(required=False, help_text="Created before this time.")
        cursor = serializers.CharField(required=False, allow_blank=True)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fields["from"] = serializers.DateTimeField(required=False, help_text="Created at or after this time.")

    class OutputSerializer(serializers.Serializer[Any]):
        messages = MessageSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    @extend_schema(
        operation_id="message_list", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=OutputSerializer
    )
    def get(self, request: ApiRequest) -> Response:
        filters = self.FilterSerializer(data=request_params(request))
        if not filters.is_valid():
            raise errors.InvalidParameter(first_error(filters))
        data = filters.validated_data
        queryset = selectors.messages_for_account(
            account_id=self.key.account_id,
            status=data.get("status"),
            phone_list_id=list_id_param(self.key.account_id, data),
            ref=data.get("ref"),
            created_from=data.get("from"),
            created_until=data.get("until"),
        )
        rows, cursor = selectors.page(
            queryset, field="created_at", cursor=data.get("cursor") or None, limit=data.get("limit", DEFAULT_PAGE_SIZE)
        )
        return ok(request, self.OutputSerializer({"messages": rows, "next_cursor": cursor}).data)


def list_id_param(account_id: int, params: dict[str, Any]) -> int | None:
    """The `list` filter as a list id; another account's token is code 6."""
    token = params.get("list")
    if not token:
        return None
    return selectors.get_send_target(key=None, account_id=account_id, list_token=str(token), device_id="").phone_list.id


# --- Lists, devices, inbox ---------------------------------------------------------------


class ListCapsSerializer(serializers.Serializer[Any]):
    """A list's caps: messages one of its phones may be given per window (null: no cap)."""

    minute = serializers.IntegerField(source="rate_limit_per_minute", allow_null=True)
    hour = serializers.IntegerField(source="rate_limit_per_hour", allow_null=True)
    day = serializers.IntegerField(source="rate_limit_per_day", allow_null=True)


class CapUseSerializer(serializers.Serializer[Any]):
    limit = serializers.IntegerField(allow_null=True, help_text="The phone's own cap, else its list's; null: no cap.")
    used = serializers.IntegerField(help_text="Messages assigned to the phone in the last minute, hour or day.")


class DeviceCapsSerializer(serializers.Serializer[Any]):
    """A phone's use of its caps, per sliding window."""

    minute = CapUseSerializer()
    hour = CapUseSerializer()
    day = CapUseSerializer()


class ListListApi(ApiKeyView):
    """The account's lists with how many phones each has and how many are online."""

    class ListSerializer(serializers.Serializer[Any]):
        list = serializers.CharField(source="token")
        name = serializers.CharField()
        default_country = serializers.CharField()
        devices = serializers.IntegerField(source="phone_count")
        online = serializers.IntegerField(source="online_count")
        caps = ListCapsSerializer(source="*")

    OutputSerializer = inline_serializer("ListListOutput", fields={"lists": ListSerializer(many=True)})

    @extend_schema(operation_id="list_list", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: ApiRequest) -> Response:
        lists = (
            PhoneList.objects.filter(account_id=self.key.account_id).with_phone_counts().order_by("created_at", "pk")
        )
        return ok(request, {"lists": self.ListSerializer(lists, many=True).data})


class DeviceListApi(ApiKeyView):
    """The account's phones with their online state."""

    class DeviceSerializer(serializers.Serializer[Any]):
        device_id = serializers.CharField(source="public_id")
        name = serializers.CharField()
        model = serializers.CharField()
        list = serializers.CharField(source="phone_list.token")
        kind = serializers.CharField()
        online = serializers.BooleanField(source="is_online")
        available = serializers.BooleanField(source="is_available")
        enabled = serializers.BooleanField(source="is_enabled")
        battery = serializers.IntegerField(allow_null=True)
        signal = serializers.IntegerField(allow_null=True)
        last_seen_at = serializers.DateTimeField(allow_null=True)
        caps = serializers.SerializerMethodField()
        # Until when the phone gets no work after a phone-side failed send (null: not paused).
        paused_until = serializers.SerializerMethodField()

        def get_paused_until(self, device: Device) -> str | None:
            until = device.paused_until
            return serializers.DateTimeField().to_representation(until) if until and device.is_paused else None

        @extend_schema_field(DeviceCapsSerializer)
        def get_caps(self, device: Device) -> dict[str, dict[str, int | None]]:
            caps: dict[str, dict[str, int | None]] = self.context["caps"][device.pk]
            return caps

    OutputSerializer = inline_serializer("DeviceListOutput", fields={"devices": DeviceSerializer(many=True)})

    @extend_schema(operation_id="device_list", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: ApiRequest) -> Response:
        params = request_params(request)
        devices = (
            Device.objects.with_online()
            .select_related("phone_list")
            .filter(account_id=self.key.account_id, removed_at__isnull=True)
        )
        phone_list_id = list_id_param(self.key.account_id, params)
        if phone_list_id is not None:
            devices = devices.filter(phone_list_id=phone_list_id)
        rows = list(devices.order_by("created_at", "pk"))
        context = {"caps": selectors.caps_of_devices(rows)}
        return ok(request, {"devices": self.DeviceSerializer(rows, many=True, context=context).data})


class InboxApi(ApiKeyView):
    """SMS received by the account's phones, newest first, with cursor pagination."""

    class SmsSerializer(serializers.Serializer[Any]):
        id = serializers.CharField(source="public_id")
        sender = serializers.CharField()
        msg = serializers.CharField(source="text")
        list = serializers.CharField(source="phone_list.token")
        device_id = serializers.CharField(source="device.public_id", default=None, allow_null=True)
        sim = serializers.IntegerField(allow_null=True)
        keyword = serializers.CharField()
        received_at = serializers.DateTimeField()

        def to_representation(self, instance: InboundSms) -> dict[str, Any]:
            data = super().to_representation(instance)
            data["from"] = data.pop("sender")  # the `incoming` frame (docs/device-protocol.md) calls it `from`
            return data

    class OutputSerializer(serializers.Serializer[Any]):
        messages = serializers.ListField(child=serializers.DictField())
        next_cursor = serializers.CharField(allow_null=True)

    class FilterSerializer(serializers.Serializer[Any]):
        list = serializers.CharField(required=False, allow_blank=True, help_text="List token.")
        until = serializers.DateTimeField(required=False, help_text="Received before this time.")
        cursor = serializers.CharField(required=False, allow_blank=True)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fields["from"] = serializers.DateTimeField(required=False, help_text="Received at or after this time.")

    @extend_schema(operation_id="inbox", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=OutputSerializer)
    def get(self, request: ApiRequest) -> Response:
        filters = self.FilterSerializer(data=request_params(request))
        if not filters.is_valid():
            raise errors.InvalidParameter(first_error(filters))
        data = filters.validated_data
        queryset = selectors.inbox_for_account(
            account_id=self.key.account_id,
            phone_list_id=list_id_param(self.key.account_id, data),
            received_from=data.get("from"),
            received_until=data.get("until"),
        )
        rows, cursor = selectors.page(
            queryset, field="received_at", cursor=data.get("cursor") or None, limit=data.get("limit", DEFAULT_PAGE_SIZE)
        )
        return ok(request, {"messages": self.SmsSerializer(rows, many=True).data, "next_cursor": cursor})

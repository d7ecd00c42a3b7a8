"""SMSGate's client API (`/3rdparty/v1/…`): thin views over `messaging.services.smsgate`.

Plain JSON in SMSGate's field names (camelCase), bare arrays where SMSGate answers them,
`X-Total-Count` on lists, and errors as `{"message": …}` (messaging/smsgate/auth.py).
The webhooks routes are in `messaging/smsgate/webhooks.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import errors
from devices import services as device_services
from devices.models import Device, PhoneList
from devices.smsgate import wire
from ipn import services as ipn_services
from messaging.models import InboundSms
from messaging.services import smsgate as services
from messaging.services import smsgate_tokens as tokens
from messaging.smsgate.auth import SmsGateView

TAG = ["SMSGate client API"]
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_OFFSET = 1_000_000


def _time(value: datetime | None) -> str | None:
    return wire.format_datetime(value) if value is not None else None


def _query_time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace(" ", "+", 1) if "T" in raw else raw.strip())
    except ValueError:
        raise errors.InvalidParameter(f"`{name}` must be an RFC 3339 date and time.", param=name)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if len(raw) > 12 or not raw.strip().lstrip("-").isdigit():
        raise errors.InvalidParameter(f"`{name}` must be a whole number.", param=name)
    value = int(raw)
    if not low <= value <= high:
        raise errors.InvalidParameter(f"`{name}` must be {low} to {high}.", param=name)
    return value


def _query_text(request: Request, name: str, *, max_length: int = 40) -> str:
    raw = request.query_params.get(name) or ""
    if len(raw) > max_length or "\x00" in raw:
        raise errors.InvalidParameter(f"`{name}` must be at most {max_length} characters, without NUL.", param=name)
    return raw


def _query_flag(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise errors.InvalidParameter(f"`{name}` must be true or false.", param=name)


PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"At most {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
    ),
    OpenApiParameter(
        "offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, description="How many to skip."
    ),
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="Created (received) at or after."),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="Created (received) before."),
    OpenApiParameter("deviceId", {"type": "string", "maxLength": 40}, description="Only this phone's."),
]
TOTAL_COUNT_HEADER = OpenApiParameter(
    "X-Total-Count", int, OpenApiParameter.HEADER, response=True, description="How many match the filters."
)


# --- Messages ----------------------------------------------------------------------------


class SmsGateRecipientSerializer(serializers.Serializer[Any]):
    phoneNumber = serializers.CharField()
    state = serializers.ChoiceField(choices=services.STATES)
    error = serializers.CharField(required=False)


class SmsGateTextMessageSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=10_000)


class SmsGateMessageStateSerializer(serializers.Serializer[Any]):
    """SMSGate's MessageState."""

    id = serializers.CharField()
    deviceId = serializers.CharField(required=False)
    state = serializers.ChoiceField(choices=services.STATES)
    isHashed = serializers.BooleanField()
    isEncrypted = serializers.BooleanField()
    recipients = SmsGateRecipientSerializer(many=True)
    states = serializers.DictField(child=serializers.DateTimeField(), help_text="When each state was entered.")
    createdAt = serializers.DateTimeField()
    textMessage = SmsGateTextMessageSerializer(required=False, help_text="With `includeContent=true`.")


def _states(found: services.MessageState, aggregate: str) -> dict[str, str]:
    """When the message entered each state it went through (SMSGate's `states`)."""
    recipients = found.recipients

    def first(values: list[datetime | None]) -> datetime | None:
        present = [value for value in values if value is not None]
        return min(present) if present else None

    def last(values: list[datetime | None]) -> datetime | None:
        present = [value for value in values if value is not None]
        return max(present) if present else None

    moments: dict[str, datetime | None] = {"Pending": found.message.created_at}
    moments["Processed"] = first([r.assigned_at for r in recipients])
    moments["Sent"] = first([r.sent_at for r in recipients])
    if aggregate == "Delivered":
        moments["Delivered"] = last([r.delivered_at for r in recipients])
    if aggregate == "Failed":
        moments["Failed"] = last([r.failed_at or r.expired_at for r in recipients])
    if aggregate == "Cancelled":
        moments["Cancelled"] = last([r.cancelled_at for r in recipients])
    return {state: wire.format_datetime(at) for state, at in moments.items() if at is not None}


def state_json(found: services.MessageState, *, include_content: bool = False) -> dict[str, Any]:
    """A message as SMSGate's MessageState (nulls left out)."""
    aggregate = found.state
    recipients = []
    for recipient in found.recipients:
        item = {"phoneNumber": recipient.to, "state": services.STATE_OF[recipient.status]}
        if recipient.error:
            item["error"] = recipient.error
        recipients.append(item)
    answer: dict[str, Any] = {"id": found.message.external_id}
    device_id = found.message.device_id or next(
        (r.device_public_id for r in found.recipients if r.device_public_id), None
    )
    if device_id:
        answer["deviceId"] = device_id
    answer.update(
        {
            "state": aggregate,
            "isHashed": False,
            "isEncrypted": False,
            "recipients": recipients,
            "states": _states(found, aggregate),
            "createdAt": wire.format_datetime(found.message.created_at),
        }
    )
    if include_content and found.recipients:
        answer["textMessage"] = {"text": found.recipients[0].text}
    return answer


class MessagesApi(SmsGateView):
    """`POST /messages` (alias `/message`) sends one message to up to 100 numbers;
    `GET /messages` lists the caller's messages."""

    required_scopes = {"POST": "messages:send", "GET": "messages:list"}

    class InputSerializer(serializers.Serializer[Any]):
        id = serializers.CharField(
            required=False, allow_null=True, max_length=services.MAX_ID_LENGTH, help_text="Your id (unique)."
        )
        deviceId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=40)
        textMessage = SmsGateTextMessageSerializer(required=False, allow_null=True)
        message = serializers.CharField(
            required=False, allow_null=True, allow_blank=True, max_length=10_000, help_text="Legacy text field."
        )
        dataMessage = serializers.DictField(required=False, allow_null=True, help_text="Not supported (400).")
        mmsMessage = serializers.DictField(required=False, allow_null=True, help_text="Not supported (400).")
        phoneNumbers = serializers.ListField(
            child=serializers.CharField(max_length=64), min_length=1, max_length=services.MAX_RECIPIENTS
        )
        simNumber = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=4)
        withDeliveryReport = serializers.BooleanField(required=False, allow_null=True, default=True)
        priority = serializers.IntegerField(
            required=False, allow_null=True, min_value=services.MIN_PRIORITY, max_value=services.MAX_PRIORITY
        )
        isEncrypted = serializers.BooleanField(required=False, default=False, help_text="Must be false.")
        ttl = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10**9)
        validUntil = serializers.DateTimeField(required=False, allow_null=True)
        scheduleAt = serializers.DateTimeField(required=False, allow_null=True)

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_send_message",
        request=InputSerializer,
        parameters=[
            OpenApiParameter("skipPhoneValidation", bool, description="Accepted; numbers are always normalised."),
            OpenApiParameter("deviceActiveWithin", int, description="Accepted and ignored."),
        ],
        responses={202: SmsGateMessageStateSerializer},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise errors.InvalidParameter("The body must be a JSON object.")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        for name, what in (("dataMessage", "Data SMS"), ("mmsMessage", "MMS")):
            if data.get(name) is not None:
                raise errors.InvalidParameter(
                    f"{what} (`{name}`) cannot be sent through Phonefleet's phones.", param=name
                )
        if data.get("isEncrypted"):
            raise errors.InvalidParameter(
                "End-to-end encrypted messages (`isEncrypted`) are not supported.", param="isEncrypted"
            )
        text_message = data.get("textMessage")
        text = text_message["text"] if text_message else (data.get("message") or "")
        caller = self.caller
        found = services.send_message(
            key=caller.key,
            login=caller.login,
            message_id=data.get("id"),
            device_id=data.get("deviceId") or "",
            phone_numbers=data["phoneNumbers"],
            text=text,
            sim=data.get("simNumber"),
            ttl=data.get("ttl"),
            valid_until=data.get("validUntil"),
            schedule_at=data.get("scheduleAt"),
            priority=data.get("priority") or 0,
            with_delivery_report=data.get("withDeliveryReport") is not False,
        )
        location = request.path.rstrip("/").removesuffix("/message").removesuffix("/messages")
        answer = Response(state_json(found), status=202)
        answer["Location"] = f"{location}/messages/{found.message.external_id}"
        return answer

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_list_messages",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("state", str, enum=services.STATES),
            OpenApiParameter("sort", str, enum=["created_at", "-created_at"]),
            OpenApiParameter("includeContent", bool),
            TOTAL_COUNT_HEADER,
        ],
        responses={200: SmsGateMessageStateSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        state = request.query_params.get("state") or ""
        if state and state not in services.STATES:
            raise errors.InvalidParameter(f"`state` is one of {', '.join(services.STATES)}.", param="state")
        sort = request.query_params.get("sort") or "-created_at"
        if sort not in ("created_at", "-created_at"):
            raise errors.InvalidParameter("`sort` is created_at or -created_at.", param="sort")
        caller = self.caller
        page = services.list_messages(
            account_id=caller.account_id,
            phone_list_id=caller.list_scope,
            since=_query_time(request, "from"),
            until=_query_time(request, "to"),
            state=state,
            device_id=_query_text(request, "deviceId"),
            limit=_query_int(request, "limit", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
            offset=_query_int(request, "offset", default=0, low=0, high=MAX_OFFSET),
            newest_first=sort == "-created_at",
        )
        content = _query_flag(request, "includeContent")
        answer = Response([state_json(found, include_content=content) for found in page.states])
        answer["X-Total-Count"] = str(page.total)
        return answer


class MessageDetailApi(SmsGateView):
    """`GET /messages/{id}`: the message's state; `DELETE /messages/{id}`: cancels what no
    phone has taken yet."""

    required_scopes = {"GET": "messages:read", "DELETE": "messages:cancel"}

    @extend_schema(tags=TAG, operation_id="smsgate_get_message", responses={200: SmsGateMessageStateSerializer})
    def get(self, request: Request, message_id: str) -> Response:
        caller = self.caller
        found = services.get_message_state(
            account_id=caller.account_id, phone_list_id=caller.list_scope, message_id=message_id
        )
        return Response(state_json(found, include_content=True))

    @extend_schema(tags=TAG, operation_id="smsgate_cancel_message", responses={204: None})
    def delete(self, request: Request, message_id: str) -> Response:
        caller = self.caller
        services.cancel_message(account_id=caller.account_id, phone_list_id=caller.list_scope, message_id=message_id)
        return Response(status=204)


# --- Phones --------------------------------------------------------------------------------


class SmsGateDeviceSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    name = serializers.CharField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    lastSeen = serializers.DateTimeField()


def device_json(device: Device) -> dict[str, Any]:
    seen = device.last_seen_at or device.created_at
    return {
        "id": device.public_id,
        "name": device.name,
        "createdAt": wire.format_datetime(device.created_at),
        "updatedAt": wire.format_datetime(max(seen, device.created_at)),
        "lastSeen": wire.format_datetime(seen),
    }


class DevicesApi(SmsGateView):
    """`GET /devices`: the caller's phones (a login's list, or the key's whole account)."""

    required_scopes = {"GET": "devices:list"}

    @extend_schema(tags=TAG, operation_id="smsgate_list_devices", responses={200: SmsGateDeviceSerializer(many=True)})
    def get(self, request: Request) -> Response:
        caller = self.caller
        devices = services.devices_of(account_id=caller.account_id, phone_list_id=caller.list_scope)
        return Response([device_json(device) for device in devices])


class DeviceDetailApi(SmsGateView):
    """`DELETE /devices/{id}`: removes the phone for good (its token stops working)."""

    required_scopes = {"DELETE": "devices:delete"}

    @extend_schema(tags=TAG, operation_id="smsgate_remove_device", responses={204: None})
    def delete(self, request: Request, device_id: str) -> Response:
        caller = self.caller
        services.remove_device(account_id=caller.account_id, phone_list_id=caller.list_scope, device_id=device_id)
        return Response(status=204)


# --- Settings ------------------------------------------------------------------------------

LIMIT_PERIODS = ("Disabled", "PerMinute", "PerHour", "PerDay")
# SMSGate's one sending limit, onto the list's caps (shortest first: the one GET shows).
PERIOD_FIELDS = {
    "PerMinute": "rate_limit_per_minute",
    "PerHour": "rate_limit_per_hour",
    "PerDay": "rate_limit_per_day",
}


class SmsGateSettingsMessagesSerializer(serializers.Serializer[Any]):
    limit_period = serializers.ChoiceField(choices=LIMIT_PERIODS, required=False)
    limit_value = serializers.IntegerField(required=False, min_value=0, max_value=10**6)
    processing_order = serializers.ChoiceField(choices=["FIFO"], required=False, help_text="Always FIFO.")


class SmsGateSettingsWebhooksSerializer(serializers.Serializer[Any]):
    signing_key = serializers.CharField(
        required=False, max_length=100, help_text="The key the server signs webhooks with (X-Signature)."
    )


class SmsGateSettingsSerializer(serializers.Serializer[Any]):
    """SMSGate's settings; Phonefleet maps `messages.limit_*` onto the list's per-phone cap
    of that period (GET shows the shortest period with a cap), and `webhooks.signing_key`
    is the key its server signs the account's webhooks with."""

    messages = SmsGateSettingsMessagesSerializer(required=False)
    webhooks = SmsGateSettingsWebhooksSerializer(required=False)


def _list_for_settings(caller_list_id: int | None, account_id: int) -> PhoneList:
    lists = PhoneList.objects.filter(account_id=account_id)
    if caller_list_id is not None:
        found = lists.filter(pk=caller_list_id).first()
    else:
        candidates = list(lists[:2])
        found = candidates[0] if len(candidates) == 1 else None
    if found is None:
        raise errors.TargetNotFound("This API key has no default list whose settings these would be.")
    return found


def _list_limit(phone_list: PhoneList) -> tuple[str, int]:
    """The list's caps as SMSGate's one limit: the shortest period with a cap."""
    for period, field in PERIOD_FIELDS.items():
        value = getattr(phone_list, field)
        if value:
            return period, value
    return "Disabled", 0


def settings_json(phone_list: PhoneList) -> dict[str, Any]:
    period, value = _list_limit(phone_list)
    limit = {"limit_period": period, "limit_value": value}
    signing_key = ipn_services.smsgate_signing_key(account_id=phone_list.account_id)
    return {"messages": {**limit, "processing_order": "FIFO"}, "webhooks": {"signing_key": signing_key}}


def _change_signing_key(*, account_id: int, data: dict[str, Any]) -> None:
    """`webhooks.signing_key`: the server signs with it, so a migrating user may keep the
    key their receivers verify with (SMSGate's own server refuses to set it)."""
    webhooks = _section(data, "webhooks")
    for name in webhooks:
        if name not in ("signing_key", "signingKey"):
            raise errors.InvalidParameter(
                f"webhooks.{str(name)[:40]!r} is not a Phonefleet setting: the server retries webhooks on its own "
                "schedule; only `signing_key` may be set.",
                param="webhooks",
            )
    key = webhooks.get("signing_key", webhooks.get("signingKey"))
    if key is not None:
        if not isinstance(key, str):
            raise errors.InvalidParameter("`signing_key` must be a string.", param="signing_key")
        ipn_services.set_smsgate_signing_key(account_id=account_id, key=key)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidParameter(f"`{name}` must be an object.", param=name)
    return value


# Settings of SMSGate's app that have no meaning for a Phonefleet list (the phones of a list
# are configured by the server, not by these).
MESSAGE_SETTINGS = {"limit_period", "limit_value", "processing_order", "limitPeriod", "limitValue", "processingOrder"}


class SettingsApi(SmsGateView):
    """`GET /settings`: the list's settings in SMSGate's shape; `PUT` replaces and `PATCH`
    changes them. Only the sending limit (`messages.limit_period`: Disabled, PerMinute,
    PerHour or PerDay, `messages.limit_value`) maps onto Phonefleet settings, the list's
    per-phone cap of that period; anything else is refused."""

    required_scopes = {"GET": "settings:read", "PUT": "settings:write", "PATCH": "settings:write"}

    @extend_schema(tags=TAG, operation_id="smsgate_get_settings", responses={200: SmsGateSettingsSerializer})
    def get(self, request: Request) -> Response:
        caller = self.caller
        return Response(settings_json(_list_for_settings(caller.phone_list_id, caller.account_id)))

    @transaction.atomic  # a refused `messages` section leaves the signing key as it was
    def _change(self, request: Request, *, replace: bool) -> Response:
        caller = self.caller
        phone_list = _list_for_settings(caller.phone_list_id, caller.account_id)
        if not isinstance(request.data, dict):
            raise errors.InvalidParameter("The body must be a JSON object.")
        for name, value in request.data.items():
            if name not in ("messages", "webhooks") and value not in (None, {}):
                raise errors.InvalidParameter(
                    f"{str(name)[:40]!r} settings are not Phonefleet settings.", param="settings"
                )
        _change_signing_key(account_id=caller.account_id, data=request.data)
        messages = _section(request.data, "messages")
        for name in messages:
            if name not in MESSAGE_SETTINGS:
                raise errors.InvalidParameter(
                    f"messages.{str(name)[:40]!r} is not a Phonefleet setting; only the sending limit is.",
                    param="messages",
                )
        period = messages.get("limit_period", messages.get("limitPeriod"))
        value = messages.get("limit_value", messages.get("limitValue"))
        order = messages.get("processing_order", messages.get("processingOrder"))
        if order not in (None, "FIFO"):
            raise errors.InvalidParameter(
                "Phonefleet hands out messages oldest first (FIFO).", param="processing_order"
            )
        if period is None and value is None and not replace:
            return Response(settings_json(phone_list))
        if period not in (None, *LIMIT_PERIODS):
            raise errors.InvalidParameter(f"`limit_period` is one of {', '.join(LIMIT_PERIODS)}.", param="limit_period")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**6):
            raise errors.InvalidParameter("`limit_value` is a whole number from 0.", param="limit_value")
        no_caps: dict[str, Any] = dict.fromkeys(PERIOD_FIELDS.values())
        if period == "Disabled" or (period is None and replace) or value == 0:
            changes = no_caps  # no limit at all
        else:
            current_period, _value = _list_limit(phone_list)
            field = PERIOD_FIELDS[period or (current_period if current_period != "Disabled" else "PerMinute")]
            if value is None:
                if getattr(phone_list, field) is None:
                    raise errors.InvalidParameter("Give `limit_value` with the period.", param="limit_value")
                value = getattr(phone_list, field)
            # PUT replaces: SMSGate's one limit is then the list's only cap. PATCH sets that one.
            changes = {**(no_caps if replace else {}), field: value}
        phone_list = device_services.update_list_settings(phone_list=phone_list, **changes)
        return Response(settings_json(phone_list))

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_replace_settings",
        request=SmsGateSettingsSerializer,
        responses={200: SmsGateSettingsSerializer},
    )
    def put(self, request: Request) -> Response:
        return self._change(request, replace=True)

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_update_settings",
        request=SmsGateSettingsSerializer,
        responses={200: SmsGateSettingsSerializer},
    )
    def patch(self, request: Request) -> Response:
        return self._change(request, replace=False)


# --- Inbox ----------------------------------------------------------------------------------


class SmsGateIncomingMessageSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=["SMS"])
    sender = serializers.CharField()
    contentPreview = serializers.CharField()
    createdAt = serializers.DateTimeField()
    simNumber = serializers.IntegerField(required=False)
    deviceId = serializers.CharField(required=False)


def inbound_json(row: InboundSms) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.public_id,
        "type": "SMS",
        "sender": row.sender,
        "contentPreview": row.text,
        "createdAt": wire.format_datetime(row.received_at),
    }
    if row.sim:
        item["simNumber"] = row.sim
    if row.device is not None:
        item["deviceId"] = row.device.public_id
    return item


class InboxApi(SmsGateView):
    """`GET /inbox`: the SMS the caller's phones received, newest first."""

    required_scopes = {"GET": "inbox:list"}

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_list_inbox",
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("type", str, enum=["SMS"]), TOTAL_COUNT_HEADER],
        responses={200: SmsGateIncomingMessageSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        kind = request.query_params.get("type")
        caller = self.caller
        if kind not in (None, "", "SMS"):
            answer = Response([])
            answer["X-Total-Count"] = "0"
            return answer
        page = services.list_inbox(
            account_id=caller.account_id,
            phone_list_id=caller.list_scope,
            since=_query_time(request, "from"),
            until=_query_time(request, "to"),
            device_id=_query_text(request, "deviceId"),
            limit=_query_int(request, "limit", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
            offset=_query_int(request, "offset", default=0, low=0, high=MAX_OFFSET),
        )
        answer = Response([inbound_json(row) for row in page.rows])
        answer["X-Total-Count"] = str(page.total)
        return answer


class InboxRefreshApi(SmsGateView):
    """`POST /inbox/refresh` (and the older `/messages/inbox/export`, `/inbox/export`): asks
    SMSGate phones to send the SMS they received in a period again; they reach the inbox
    (once each) and the callbacks and webhooks of received SMS."""

    required_scopes = {"POST": "inbox:refresh"}

    class InputSerializer(serializers.Serializer[Any]):
        since = serializers.DateTimeField()
        until = serializers.DateTimeField()
        deviceId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=40)
        messageTypes = serializers.ListField(
            child=serializers.CharField(max_length=20), required=False, allow_null=True, help_text="Only SMS."
        )
        triggerWebhooks = serializers.BooleanField(required=False, allow_null=True, help_text="Always true.")
        webhookDelivery = serializers.CharField(required=False, allow_null=True, max_length=20, help_text="Ignored.")

    @extend_schema(
        tags=TAG, operation_id="smsgate_refresh_inbox", request=InputSerializer, responses={202: OpenApiResponse()}
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise errors.InvalidParameter("The body must be a JSON object.")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        kinds = data.get("messageTypes") or ["SMS"]
        if any(kind != "SMS" for kind in kinds):
            raise errors.InvalidParameter("Phonefleet's inbox holds SMS only: `messageTypes` may name SMS.")
        caller = self.caller
        services.request_inbox_export(
            account_id=caller.account_id,
            phone_list_id=caller.list_scope,
            device_id=data.get("deviceId") or "",
            since=data["since"],
            until=data["until"],
        )
        return Response(status=202)


# --- Logs -------------------------------------------------------------------------------------


class LogsApi(SmsGateView):
    """`GET /logs`: SMSGate's phone logs. Phonefleet collects no phone logs; the answer is an
    empty list (each message's own timeline is on its panel page)."""

    required_scopes = {"GET": "logs:read"}

    @extend_schema(
        tags=TAG,
        operation_id="smsgate_list_logs",
        parameters=[OpenApiParameter("from", OpenApiTypes.DATETIME), OpenApiParameter("to", OpenApiTypes.DATETIME)],
        responses={200: OpenApiResponse(description="Always an empty list.")},
    )
    def get(self, request: Request) -> Response:
        _query_time(request, "from")
        _query_time(request, "to")
        return Response([])


# --- Tokens -----------------------------------------------------------------------------------


class SmsGateTokenSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="The token's id (jti), for DELETE /auth/token/{jti}.")
    tokenType = serializers.CharField()
    accessToken = serializers.CharField()
    refreshToken = serializers.CharField()
    expiresAt = serializers.DateTimeField()


def token_json(issued: tokens.IssuedToken) -> dict[str, Any]:
    return {
        "id": issued.jti,
        "tokenType": "Bearer",
        "accessToken": issued.access_token,
        "refreshToken": issued.refresh_token,
        "expiresAt": wire.format_datetime(issued.expires_at),
    }


class TokenApi(SmsGateView):
    """`POST /auth/token`: an access token limited to `scopes`, valid `ttl` seconds, for the
    caller's own login or API key (and so bound by that key's rules)."""

    required_scopes = {"POST": "tokens:manage"}

    class InputSerializer(serializers.Serializer[Any]):
        scopes = serializers.ListField(child=serializers.ChoiceField(choices=tokens.SCOPES), min_length=1)
        ttl = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10**9)

    @extend_schema(
        tags=TAG, operation_id="smsgate_issue_token", request=InputSerializer, responses={201: SmsGateTokenSerializer}
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise errors.InvalidParameter("The body must be a JSON object.")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        caller = self.caller
        scopes = frozenset(tokens.clean_scopes(serializer.validated_data["scopes"]))
        if tokens.SCOPES[0] not in caller.scopes and not scopes <= caller.scopes:
            raise errors.InvalidParameter("A token cannot carry scopes its own credential lacks.", param="scopes")
        grant = caller.grant()
        issued = tokens.issue_token(
            grantor=tokens.TokenClaims(
                "", "", grant.account_id, grant.subject, grant.subject_id, grant.fingerprint, scopes
            ),
            ttl=serializer.validated_data.get("ttl"),
        )
        return Response(token_json(issued), status=201)


class TokenRefreshApi(SmsGateView):
    """`POST /auth/token/refresh` with `Authorization: Bearer <refresh token>`: a new token
    pair; the refresh token (and its access token) stop working."""

    takes_refresh_token = True

    @extend_schema(
        tags=TAG, operation_id="smsgate_refresh_token", request=None, responses={201: SmsGateTokenSerializer}
    )
    def post(self, request: Request) -> Response:
        caller = self.caller
        grant = caller.grant()
        claims = tokens.TokenClaims(
            caller.token_id,
            caller.token_kind,
            caller.account_id,
            grant.subject,
            grant.subject_id,
            grant.fingerprint,
            caller.scopes,
        )
        return Response(token_json(tokens.refresh_token(claims=claims)), status=201)


class TokenRevokeApi(SmsGateView):
    """`DELETE /auth/token/{jti}`: revokes one of the account's tokens (with its pair)."""

    required_scopes = {"DELETE": "tokens:manage"}

    @extend_schema(tags=TAG, operation_id="smsgate_revoke_token", responses={204: None})
    def delete(self, request: Request, jti: str) -> Response:
        tokens.revoke_token(account_id=self.caller.account_id, jti=jti)
        return Response(status=204)

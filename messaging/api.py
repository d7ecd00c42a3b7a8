"""The public messaging API: send (one and bulk), read, cancel, lists, devices, inbox,
list subscribers and broadcasts.

Every view derives from `ApiKeyView` (key → code 3, IP → code 4, per-key rate limit,
the envelope). Views validate input, call a service or selector, and render output.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db.models import Count, Q
from django.http import HttpResponse, QueryDict
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView
from accounts.envelope import ERROR_TABLE, PARAM_ERROR, envelope, error_response
from devices.models import PRESENCE_TTL, Device, PhoneList, Subscriber
from devices.selectors import get_list_for_account
from messaging import selectors
from messaging.models import InboundSms, Message
from messaging.services import accept, idempotency, subscriptions

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Parameters that carry the credential: never part of an idempotency fingerprint.
CREDENTIAL_PARAMS = ("api_key", "api")
# Errors that are the outcome of executing a request (stored for idempotent replay);
# every other error is a validation failure and frees the key.
EXECUTION_ERRORS = (errors.InsufficientCredit, errors.SpendingCapReached)


# --- Request helpers ---------------------------------------------------------------


def request_params(request: Request) -> dict[str, Any]:
    """The call's parameters: the query string, overlaid by a form or JSON body
    (GenioSms clients mix both), with the `custom` alias read as `ref`."""
    params: dict[str, Any] = dict(request.query_params.items())
    if request.method != "GET":
        try:
            data = request.data
        except RequestDataTooBig:
            raise errors.InvalidParameter("The request body is larger than this server accepts.")
        if isinstance(data, QueryDict):
            params.update(data.items())
        elif isinstance(data, dict):
            params.update(data)
        else:
            raise errors.InvalidParameter("The body must be a JSON object or a form.")
    if _has_nul(params):
        # PostgreSQL text cannot hold NUL: refuse it here rather than fail in a query (500).
        raise errors.InvalidParameter("Parameters must not contain NUL characters.")
    if "ref" not in params and "custom" in params:
        params["ref"] = params.pop("custom")
    params.pop("custom", None)
    for name in CREDENTIAL_PARAMS:
        params.pop(name, None)
    return params


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def as_text(value: Any) -> str:
    """A parameter as a string ("" when absent); JSON numbers are accepted for numbers."""
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise errors.InvalidParameter("Parameters must be strings or numbers.")
    return str(value)


def drop_empty(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Form and query strings send empty optional fields as ""; treat them as absent."""
    return {k: v for k, v in params.items() if not (k in names and v in ("", None))}


def first_error(serializer: serializers.Serializer) -> str:
    field, messages = next(iter(serializer.errors.items()))
    text = messages[0] if isinstance(messages, list) else str(messages)
    return f"`{field}`: {text}"


class IdempotentMixin:
    """Runs a write once per `Idempotency-Key` and replays its stored answer (R12)."""

    idempotency_endpoint = ""

    def run_idempotent(self, request: Request, params: dict[str, Any], execute: Callable[[], Response]) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return execute()
        api_key = request.auth
        found = idempotency.begin_request(
            api_key_id=api_key.id,  # type: ignore[union-attr]
            endpoint=self.idempotency_endpoint,
            key=key,
            fingerprint=idempotency.request_fingerprint(params),
        )
        if isinstance(found, idempotency.StoredAnswer):
            response = Response(found.body, status=found.status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            response = execute()
        except EXECUTION_ERRORS as exc:
            response = error_response(exc)
        except BaseException:
            idempotency.release_request(record=found)
            raise
        idempotency.finish_request(record=found, status=response.status_code, body=dict(response.data))
        return response


def ok(request: Request, data: dict[str, Any], status: int = 200) -> Response:
    """A success answer with its envelope built now, so it can be stored and replayed."""
    code = getattr(request, "api_status_code", 2)
    return Response(envelope(status, code, **data), status=status)


# --- Output serializers shared by several operations ----------------------------------


class RecordSerializer(serializers.Serializer):
    device_id = serializers.CharField(source="public_id")
    device_name = serializers.CharField(source="name")
    received = serializers.SerializerMethodField()

    def get_received(self, device: Device) -> bool:
        return True


class MessageSerializer(serializers.Serializer):
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


class TimelineEntrySerializer(serializers.Serializer):
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


SEND_OPTIONAL = ("sim", "ttl", "send_at", "ref")


# --- Send ------------------------------------------------------------------------------


class SendMessageApi(IdempotentMixin, ApiKeyView):
    """Queues one SMS and offers it to the phones of a list (or one pinned phone)."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    idempotency_endpoint = "send"

    class InputSerializer(serializers.Serializer):
        list = serializers.CharField(required=False, allow_blank=True, help_text="List token (lst_…).")
        device_id = serializers.CharField(required=False, allow_blank=True, help_text="Pin to one phone (dev_…).")
        # Missing `to`/`msg` still answer 7/8 (not 5): see `send`.
        to = serializers.CharField(help_text="Destination number (E.164, or national in the list's country).")
        msg = serializers.CharField(trim_whitespace=False, help_text="The text (at most 10 SMS parts).")
        sim = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=accept.MAX_SIM, help_text="SIM slot."
        )
        ttl = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=accept.MAX_TTL_SECONDS,
            help_text="Seconds the message may wait for a phone.",
        )
        send_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Send at (ISO 8601).")
        ref = serializers.CharField(
            required=False, allow_blank=True, max_length=255, help_text="Your reference (alias `custom`)."
        )

    class OutputSerializer(serializers.Serializer):
        message_id = serializers.CharField(source="message.public_id")
        to = serializers.CharField(source="message.to")
        parts = serializers.IntegerField(source="message.parts")
        cost = serializers.IntegerField(source="message.cost")
        records = RecordSerializer(many=True)

    @extend_schema(
        operation_id="send",
        parameters=[API_KEY_PARAMETER, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: Request) -> Response:
        params = request_params(request)
        return self.run_idempotent(request, params, lambda: self.send(request, params))

    @extend_schema(
        operation_id="send_get",
        parameters=[API_KEY_PARAMETER, InputSerializer],
        responses=OutputSerializer,
        description="The same as POST, with the parameters in the query string (for quick tests).",
    )
    def get(self, request: Request) -> Response:
        return self.post(request)

    def send(self, request: Request, params: dict[str, Any]) -> Response:
        serializer = self.InputSerializer(data=drop_empty(params, ("sim", "ttl", "send_at")))
        if not serializer.is_valid():
            # A malformed optional parameter (code 5) comes after the target, `to`, `msg` checks.
            accept.resolve_target(
                key=self.key, list_token=as_text(params.get("list")), device_id=as_text(params.get("device_id"))
            )
            accept.check_required(to=as_text(params.get("to")), text=as_text(params.get("msg")))
            raise errors.InvalidParameter(first_error(serializer))
        data = serializer.validated_data
        accepted = accept.accept_message(
            key=self.key,
            list_token=data.get("list"),
            device_id=data.get("device_id"),
            to=data.get("to", ""),
            text=data.get("msg", ""),
            sim=data.get("sim"),
            ttl=data.get("ttl"),
            send_at=data.get("send_at"),
            ref=data.get("ref", ""),
        )
        return ok(request, self.OutputSerializer(accepted).data)


@extend_schema_view(
    post=extend_schema(operation_id="geniosms_send"), get=extend_schema(operation_id="geniosms_send_get")
)
class GenioSmsSendApi(SendMessageApi):
    """The send operation at GenioSms's path, so its clients only change the host."""


class SendBulkApi(IdempotentMixin, ApiKeyView):
    """Queues up to 10,000 messages in one request: a JSON array or a CSV upload."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]
    idempotency_endpoint = "send/bulk"

    class RecipientSerializer(serializers.Serializer):
        to = serializers.CharField(allow_blank=True)
        msg = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        ref = serializers.CharField(required=False, allow_blank=True)

    class InputSerializer(serializers.Serializer):
        list = serializers.CharField(required=False, allow_blank=True)
        device_id = serializers.CharField(required=False, allow_blank=True)
        msg = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, help_text="Text for rows without their own."
        )
        # Checked row by row in `json_row` (a ListField would validate 10,000 dicts slowly).
        recipients = serializers.JSONField(required=False, help_text='[{"to": …, "msg"?: …, "ref"?: …}, …]')
        file = serializers.FileField(required=False, help_text="CSV upload: to[,msg[,ref]] per row.")
        sim = serializers.IntegerField(required=False, allow_null=True)
        ttl = serializers.IntegerField(required=False, allow_null=True)
        send_at = serializers.DateTimeField(required=False, allow_null=True)

    class RowErrorSerializer(serializers.Serializer):
        row = serializers.IntegerField()
        status_code = serializers.CharField()
        error = serializers.CharField()

    class AcceptedRowSerializer(serializers.Serializer):
        message_id = serializers.CharField()
        to = serializers.CharField()
        parts = serializers.IntegerField()

    class OutputSerializer(serializers.Serializer):
        batch_id = serializers.CharField()
        accepted = serializers.IntegerField()
        rejected = serializers.IntegerField()
        parts = serializers.IntegerField()
        cost = serializers.IntegerField()
        messages = serializers.ListField(child=serializers.DictField())
        errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]

    @extend_schema(
        operation_id="send_bulk",
        parameters=[API_KEY_PARAMETER, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request={"application/json": InputSerializer, "multipart/form-data": InputSerializer},
        responses=OutputSerializer,
    )
    def post(self, request: Request) -> Response:
        params = request_params(request)
        upload = params.pop("file", None)
        fingerprint_params = dict(params)
        rows: list[accept.BulkRow] | None = None
        if upload is not None:
            rows = read_csv_rows(upload)
            fingerprint_params["file"] = [(r.to, r.text, r.ref) for r in rows]
        return self.run_idempotent(request, fingerprint_params, lambda: self.send(request, params, rows))

    def send(self, request: Request, params: dict[str, Any], rows: list[accept.BulkRow] | None) -> Response:
        serializer = self.InputSerializer(data=drop_empty(params, ("sim", "ttl", "send_at")))
        if not serializer.is_valid():
            accept.resolve_target(
                key=self.key, list_token=as_text(params.get("list")), device_id=as_text(params.get("device_id"))
            )
            raise errors.InvalidParameter(first_error(serializer))
        data = serializer.validated_data
        if rows is None:
            recipients = data.get("recipients", [])
            if not isinstance(recipients, list):
                raise errors.InvalidParameter('`recipients` must be a JSON array of {"to", "msg", "ref"} objects.')
            rows = [json_row(item) for item in recipients]
        try:
            result = accept.accept_bulk(
                key=self.key,
                list_token=data.get("list"),
                device_id=data.get("device_id"),
                rows=rows,
                text=data.get("msg", ""),
                sim=data.get("sim"),
                ttl=data.get("ttl"),
                send_at=data.get("send_at"),
            )
        except accept.NoValidRecipients as exc:
            raise errors.InvalidParameter(exc.message, errors=row_errors(exc.row_errors))
        body = {
            "batch_id": result.batch_id,
            "accepted": len(result.messages),
            "rejected": len(result.errors),
            "parts": result.parts,
            "cost": result.cost,
            "messages": [{"message_id": m.public_id, "to": m.to, "parts": m.parts} for m in result.messages],
            "errors": row_errors(result.errors),
        }
        return ok(request, body)


def json_row(item: Any) -> accept.BulkRow:
    if not isinstance(item, dict):
        return accept.BulkRow(to="")  # reported as a row without a number
    return accept.BulkRow(
        to=as_text(item.get("to")), text=as_text(item.get("msg")), ref=as_text(item.get("ref", item.get("custom")))
    )


def read_csv_rows(upload: Any) -> list[accept.BulkRow]:
    """Rows `to[,msg[,ref]]` of an uploaded CSV (UTF-8, optional header row naming `to`)."""
    if not hasattr(upload, "read"):
        raise errors.InvalidParameter("`file` must be an uploaded CSV file.")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise errors.InvalidParameter("The CSV file must be UTF-8.")
    reader = csv.reader(io.StringIO(text))
    rows = [row for row in reader if any(cell.strip() for cell in row)]
    if rows and rows[0] and rows[0][0].strip().lower() == "to":
        rows = rows[1:]
    if len(rows) > accept.MAX_BULK_ROWS:
        raise errors.InvalidParameter(f"At most {accept.MAX_BULK_ROWS} recipients per request.")
    return [accept.BulkRow(to=row[0], text=row[1] if len(row) > 1 else "", ref=",".join(row[2:])) for row in rows]


def row_errors(items: list[accept.RowError]) -> list[dict[str, Any]]:
    return [
        {
            "row": item.row,
            "status_code": str(ERROR_TABLE.get(type(item.error), (PARAM_ERROR, 400))[0]),
            "error": item.error.message,
        }
        for item in items
    ]


# --- Read and manage messages ------------------------------------------------------


class MessageDetailApi(ApiKeyView):
    """One message: status, timeline, phone, parts, cost and your `ref`."""

    class OutputSerializer(MessageSerializer):
        timeline = TimelineEntrySerializer(many=True)

    @extend_schema(operation_id="message_detail", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: Request, message_id: str) -> Response:
        message = selectors.get_message_for_account(account_id=self.key.account_id, message_id=message_id)
        message.timeline = timeline(message)  # type: ignore[attr-defined]
        return ok(request, self.OutputSerializer(message).data)


class CancelMessageApi(ApiKeyView):
    """Cancels a message that is still queued, and gives its credit back."""

    OutputSerializer = MessageSerializer

    @extend_schema(
        operation_id="message_cancel", parameters=[API_KEY_PARAMETER], request=None, responses=MessageSerializer
    )
    def post(self, request: Request, message_id: str) -> Response:
        message = accept.cancel_message(account_id=self.key.account_id, message_id=message_id)
        return ok(request, self.OutputSerializer(message).data)


class MessageListApi(ApiKeyView):
    """The account's messages, newest first, with filters and cursor pagination."""

    class FilterSerializer(serializers.Serializer):
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

    class OutputSerializer(serializers.Serializer):
        messages = MessageSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    @extend_schema(
        operation_id="message_list", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=OutputSerializer
    )
    def get(self, request: Request) -> Response:
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
    return selectors.get_send_target(
        account_id=account_id, default_list_id=None, list_token=str(token), device_id=""
    ).phone_list.id


# --- Lists, devices, inbox ---------------------------------------------------------------


class ListListApi(ApiKeyView):
    """The account's lists with how many phones each has and how many are online."""

    class ListSerializer(serializers.Serializer):
        list = serializers.CharField(source="token")
        name = serializers.CharField()
        default_country = serializers.CharField()
        devices = serializers.IntegerField(source="device_count")
        online = serializers.IntegerField(source="online_count")

    class OutputSerializer(serializers.Serializer):
        lists = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="list_list", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        active = Q(devices__removed_at__isnull=True)
        online = active & Q(
            devices__is_enabled=True,
            devices__is_connected=True,
            devices__last_seen_at__gte=timezone.now() - PRESENCE_TTL,
        )
        lists = (
            PhoneList.objects.filter(account_id=self.key.account_id)
            .annotate(device_count=Count("devices", filter=active), online_count=Count("devices", filter=online))
            .order_by("created_at", "pk")
        )
        return ok(request, {"lists": self.ListSerializer(lists, many=True).data})


class DeviceListApi(ApiKeyView):
    """The account's phones with their online state."""

    class DeviceSerializer(serializers.Serializer):
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

    class OutputSerializer(serializers.Serializer):
        devices = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="device_list", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        params = request_params(request)
        devices = Device.objects.select_related("phone_list").filter(
            account_id=self.key.account_id, removed_at__isnull=True
        )
        phone_list_id = list_id_param(self.key.account_id, params)
        if phone_list_id is not None:
            devices = devices.filter(phone_list_id=phone_list_id)
        devices = devices.order_by("created_at", "pk")
        return ok(request, {"devices": self.DeviceSerializer(devices, many=True).data})


class InboxApi(ApiKeyView):
    """SMS received by the account's phones, newest first, with cursor pagination."""

    class SmsSerializer(serializers.Serializer):
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
            data["from"] = data.pop("sender")  # SPEC's `incoming` frame calls it `from`
            return data

    class OutputSerializer(serializers.Serializer):
        messages = serializers.ListField(child=serializers.DictField())
        next_cursor = serializers.CharField(allow_null=True)

    class FilterSerializer(serializers.Serializer):
        list = serializers.CharField(required=False, allow_blank=True, help_text="List token.")
        until = serializers.DateTimeField(required=False, help_text="Received before this time.")
        cursor = serializers.CharField(required=False, allow_blank=True)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fields["from"] = serializers.DateTimeField(required=False, help_text="Received at or after this time.")

    @extend_schema(operation_id="inbox", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
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


# --- List subscribers and broadcast -------------------------------------------------------


class SubscriberSerializer(serializers.Serializer):
    number = serializers.CharField()
    # `source` is declared in __init__ below: the class attribute name is DRF's own.
    subscribed = serializers.BooleanField(source="is_subscribed")
    subscribed_at = serializers.DateTimeField()
    unsubscribed_at = serializers.DateTimeField(allow_null=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"] = serializers.CharField(help_text="How they joined: sms, panel, api or import.")


def subscriber_list(account_id: int, token: str) -> PhoneList:
    """The caller's list from the path; another account's token is code 6."""
    if "\x00" in token:  # PostgreSQL text cannot hold NUL: no list has such a token
        raise errors.TargetNotFound("Unknown list token.")
    return get_list_for_account(account_id=account_id, token=token)


def numbers_param(params: dict[str, Any]) -> list[str]:
    """`number` (one) and/or `numbers` (a JSON array, or one string separated by commas,
    semicolons or new lines)."""
    found: list[str] = []
    raw = params.get("numbers")
    if isinstance(raw, list):
        found += [as_text(item) for item in raw]
    elif raw not in (None, ""):
        found += [item.strip() for item in re.split(r"[,;\n\r]+", as_text(raw)) if item.strip()]
    if params.get("number") not in (None, ""):
        found.insert(0, as_text(params["number"]))
    return found


class SubscriberListApi(ApiKeyView):
    """A list's subscribers (GET, newest first, cursor pages) and adding them (POST)."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(
            choices=["subscribed", "unsubscribed", "all"], required=False, help_text="Default: subscribed."
        )
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

    class InputSerializer(serializers.Serializer):
        number = serializers.CharField(required=False, allow_blank=True, help_text="One number to add.")
        numbers = serializers.JSONField(required=False, help_text="Several: a JSON array, or comma-separated.")

    class PageSerializer(serializers.Serializer):
        subscribers = SubscriberSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    class RowErrorSerializer(serializers.Serializer):
        row = serializers.IntegerField()
        number = serializers.CharField()
        status_code = serializers.CharField()
        error = serializers.CharField()

    class AddedSerializer(serializers.Serializer):
        added = serializers.ListField(child=serializers.CharField())
        already = serializers.ListField(child=serializers.CharField())
        errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]

    @extend_schema(
        operation_id="subscriber_list", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=PageSerializer
    )
    def get(self, request: Request, token: str) -> Response:
        phone_list = subscriber_list(self.key.account_id, token)
        filters = self.FilterSerializer(data=request_params(request))
        if not filters.is_valid():
            raise errors.InvalidParameter(first_error(filters))
        state = filters.validated_data.get("state", "subscribed")
        rows = phone_list.subscribers.all()
        if state != "all":
            rows = rows.filter(unsubscribed_at__isnull=state == "subscribed")
        found, cursor = selectors.page(
            rows,
            field="subscribed_at",
            cursor=filters.validated_data.get("cursor"),
            limit=filters.validated_data.get("limit", DEFAULT_PAGE_SIZE),
        )
        return ok(request, self.PageSerializer({"subscribers": found, "next_cursor": cursor}).data)

    @extend_schema(
        operation_id="subscriber_add",
        parameters=[API_KEY_PARAMETER],
        request=InputSerializer,
        responses=AddedSerializer,
    )
    def post(self, request: Request, token: str) -> Response:
        phone_list = subscriber_list(self.key.account_id, token)
        given = numbers_param(request_params(request))
        if not given:
            raise errors.MissingTo("Give `number` or `numbers`.")
        result = subscriptions.import_subscribers(phone_list=phone_list, numbers=given, source=Subscriber.Source.API)
        if not (result.added or result.already):
            raise errors.InvalidParameter(result.errors[0][2], errors=import_errors(result))
        return ok(request, {"added": result.added, "already": result.already, "errors": import_errors(result)})


def import_errors(result: subscriptions.ImportResult) -> list[dict[str, Any]]:
    return [
        {"row": row, "number": text, "status_code": str(PARAM_ERROR), "error": message}
        for row, text, message in result.errors
    ]


class SubscriberDetailApi(ApiKeyView):
    """Removes one subscriber (as if they had texted DEL)."""

    @extend_schema(
        operation_id="subscriber_remove", parameters=[API_KEY_PARAMETER], request=None, responses=SubscriberSerializer
    )
    def delete(self, request: Request, token: str, number: str) -> Response:
        phone_list = subscriber_list(self.key.account_id, token)
        change = subscriptions.unsubscribe(phone_list=phone_list, number=number)
        if not change.changed:
            raise errors.NotFound(f"{change.number} is not subscribed to this list.")
        row = phone_list.subscribers.get(number=change.number)
        return ok(request, SubscriberSerializer(row).data)


class SubscriberExportApi(ApiKeyView):
    """Every subscriber of the list, current and former, as CSV (the panel's export)."""

    @extend_schema(
        operation_id="subscriber_export",
        parameters=[API_KEY_PARAMETER],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, token: str) -> HttpResponse:
        phone_list = subscriber_list(self.key.account_id, token)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="subscribers-{phone_list.token}.csv"'
        subscriptions.export_subscribers_csv(phone_list=phone_list, out=response)
        return response


class BroadcastApi(IdempotentMixin, ApiKeyView):
    """One text to every current subscriber of the list, as one bulk batch."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    idempotency_endpoint = "lists/broadcast"

    class InputSerializer(serializers.Serializer):
        msg = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, help_text="The text.")
        ref = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=255,
            help_text="Your reference for every message (alias `custom`).",
        )

    class OutputSerializer(serializers.Serializer):
        batch_id = serializers.CharField()
        recipients = serializers.IntegerField()
        parts = serializers.IntegerField()
        cost = serializers.IntegerField()

    @extend_schema(
        operation_id="broadcast",
        parameters=[API_KEY_PARAMETER, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: Request, token: str) -> Response:
        params = request_params(request)
        return self.run_idempotent(request, {**params, "list": token}, lambda: self.send(request, token, params))

    def send(self, request: Request, token: str, params: dict[str, Any]) -> Response:
        phone_list = subscriber_list(self.key.account_id, token)
        serializer = self.InputSerializer(data=params)
        if not serializer.is_valid():
            raise errors.InvalidParameter(first_error(serializer))
        data = serializer.validated_data
        result = subscriptions.broadcast(
            key=self.key, phone_list=phone_list, text=data.get("msg", ""), ref=data.get("ref", "")
        )
        body = {
            "batch_id": result.batch_id,
            "recipients": len(result.messages),
            "parts": result.parts,
            "cost": result.cost,
        }
        return ok(request, body)

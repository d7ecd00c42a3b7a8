"""Send: one message (`POST /api/v1/send`, and GenioSms's `tools/api.pl`) and bulk."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView, ApiRequest
from accounts.envelope import ERROR_TABLE, PARAM_ERROR
from accounts.lib.bodylimit import declared_length
from accounts.parsers import JsonParser
from devices.selectors import OnlineDevice
from messaging.api.common import (
    IdempotentMixin,
    as_text,
    drop_empty,
    first_error,
    ok,
    represent_with,
    request_params,
    validate_with,
)
from messaging.lib import numbers
from messaging.services import accept

# Optional numbers and dates that forms and query strings send as "" when left empty.
EMPTY_MEANS_ABSENT = ("sim", "ttl", "send_at")
# What a bulk row may be.
ROW_SHAPE = 'A recipient is a number ("+393331234567") or an object {"to", "msg"?, "ref"?}.'


class RecordSerializer(serializers.Serializer[Any]):
    device_id = serializers.CharField(source="public_id")
    device_name = serializers.CharField(source="name")
    received = serializers.SerializerMethodField()

    def get_received(self, device: OnlineDevice) -> bool:
        return True


# --- Send ------------------------------------------------------------------------------


class SendMessageApi(IdempotentMixin, ApiKeyView):
    """Queues one SMS and offers it to the phones of a list (or one pinned phone)."""

    parser_classes = [JsonParser, FormParser, MultiPartParser]
    idempotency_endpoint = "send"
    # Not "head": Django answers HEAD with the GET handler, and a GET here sends.
    http_method_names = ["get", "post", "options"]

    class InputSerializer(serializers.Serializer[Any]):
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

    class OutputSerializer(serializers.Serializer[Any]):
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
    def post(self, request: ApiRequest) -> Response:
        params = request_params(request)
        return self.run_idempotent(request, params, lambda: self.send(request, params))

    @extend_schema(
        operation_id="send_get",
        parameters=[API_KEY_PARAMETER, InputSerializer],
        responses=OutputSerializer,
        description="The same as POST, with the parameters in the query string (for quick tests).",
    )
    def get(self, request: ApiRequest) -> Response:
        return self.post(request)

    def send(self, request: ApiRequest, params: dict[str, Any]) -> Response:
        if isinstance(params.get("to"), str):
            params["to"] = numbers.restore_lost_plus(params["to"])
        try:
            data = validate_with(self.InputSerializer, drop_empty(params, EMPTY_MEANS_ABSENT))
        except errors.InvalidParameter:
            # A malformed optional parameter (code 5) comes after the target, `to`, `msg` checks.
            accept.resolve_target(
                key=self.key, list_token=as_text(params.get("list")), device_id=as_text(params.get("device_id"))
            )
            accept.check_required(to=as_text(params.get("to")), text=as_text(params.get("msg")))
            raise
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
        return ok(request, represent_with(self.OutputSerializer, accepted))


@extend_schema_view(
    post=extend_schema(operation_id="geniosms_send"), get=extend_schema(operation_id="geniosms_send_get")
)
class GenioSmsSendApi(SendMessageApi):
    """The send operation at GenioSms's path, so its clients only change the host.

    Every envelope of a GET or POST goes out with HTTP 200: GenioSms's compiled samples
    never read the body of another status (Java's prints "did not work", C#'s WebClient
    throws), so a refusal would never reach their code. The outcome is in `response` and
    `status_code`. Another method (which no GenioSms client uses) still gets its 405."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        sent = request.method in ("GET", "POST")
        if sent and isinstance(response.data, dict) and "response" in response.data:
            response.status_code = 200
        return response


class SendBulkApi(IdempotentMixin, ApiKeyView):
    """Queues up to 10,000 messages in one request: a JSON array or a CSV upload."""

    parser_classes = [JsonParser, MultiPartParser, FormParser]
    idempotency_endpoint = "send/bulk"

    class RecipientSerializer(serializers.Serializer[Any]):
        to = serializers.CharField(allow_blank=True)
        msg = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        ref = serializers.CharField(required=False, allow_blank=True)

    class InputSerializer(serializers.Serializer[Any]):
        list = serializers.CharField(required=False, allow_blank=True)
        device_id = serializers.CharField(required=False, allow_blank=True)
        msg = serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, help_text="Text for rows without their own."
        )
        # Checked row by row in `json_row` (a ListField would validate 10,000 dicts slowly).
        recipients = serializers.JSONField(required=False, help_text='["+39…", {"to": …, "msg"?: …, "ref"?: …}, …]')
        file = serializers.FileField(required=False, help_text="CSV upload: to[,msg[,ref]] per row.")
        sim = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=accept.MAX_SIM)
        ttl = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=accept.MAX_TTL_SECONDS)
        send_at = serializers.DateTimeField(required=False, allow_null=True)

    class RowErrorSerializer(serializers.Serializer[Any]):
        row = serializers.IntegerField()
        status_code = serializers.CharField()
        error = serializers.CharField()

    class AcceptedRowSerializer(serializers.Serializer[Any]):
        message_id = serializers.CharField()
        to = serializers.CharField()
        parts = serializers.IntegerField()

    class OutputSerializer(serializers.Serializer[Any]):
        batch_id = serializers.CharField()
        accepted = serializers.IntegerField()
        rejected = serializers.IntegerField()
        parts = serializers.IntegerField()
        cost = serializers.IntegerField()
        messages = serializers.ListField(child=serializers.DictField())
        errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A body over MAX_BODY_BYTES (up to BULK_MAX_BODY_BYTES, which the server let through
        # for this route) is read only once its key is checked, so the key must not be in it.
        length = declared_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not key_outside_body(request):
            raise errors.BodyTooLarge(
                f"A body over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (up to {settings.BULK_MAX_BODY_BYTES})"
                " needs its API key in the Authorization header or the query string."
            )
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="send_bulk",
        parameters=[API_KEY_PARAMETER, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request={"application/json": InputSerializer, "multipart/form-data": InputSerializer},
        responses=OutputSerializer,
    )
    def post(self, request: ApiRequest) -> Response:
        params = request_params(request)
        upload = params.pop("file", None)
        fingerprint_params = dict(params)
        rows: list[accept.BulkRow] | None = None
        if upload is not None:
            rows = read_csv_rows(upload)
            fingerprint_params["file"] = [(r.to, r.text, r.ref) for r in rows]
        return self.run_idempotent(request, fingerprint_params, lambda: self.send(request, params, rows))

    def send(self, request: ApiRequest, params: dict[str, Any], rows: list[accept.BulkRow] | None) -> Response:
        serializer = self.InputSerializer(data=drop_empty(params, EMPTY_MEANS_ABSENT))
        if not serializer.is_valid():
            accept.resolve_target(
                key=self.key, list_token=as_text(params.get("list")), device_id=as_text(params.get("device_id"))
            )
            raise errors.InvalidParameter(first_error(serializer))
        data = serializer.validated_data
        if rows is None:
            recipients = data.get("recipients", [])
            if not isinstance(recipients, list):
                raise errors.InvalidParameter("`recipients` must be a JSON array. " + ROW_SHAPE)
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


def key_outside_body(request: Request) -> bool:
    """Whether the call carries its key in a Bearer header or the query string."""
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return True
    return any(request.query_params.get(name) for name in ("api_key", "api"))


def json_row(item: Any) -> accept.BulkRow:
    """One element of `recipients`: a number on its own, or an object with its own text and
    ref. A row that is neither is reported as that row's error, never the request's."""
    if isinstance(item, str | int) and not isinstance(item, bool):
        return accept.BulkRow(to=str(item))
    if not isinstance(item, dict):
        return accept.BulkRow(to="", problem=ROW_SHAPE)
    try:
        return accept.BulkRow(
            to=as_text(item.get("to")), text=as_text(item.get("msg")), ref=as_text(item.get("ref", item.get("custom")))
        )
    except errors.InvalidParameter:
        return accept.BulkRow(to="", problem='A recipient\'s "to", "msg" and "ref" must be strings or numbers.')


def read_csv_rows(upload: Any) -> list[accept.BulkRow]:
    """Rows `to[,msg[,ref]]` of an uploaded CSV (UTF-8, optional header row naming `to`)."""
    if not hasattr(upload, "read"):
        raise errors.InvalidParameter("`file` must be an uploaded CSV file.")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise errors.InvalidParameter("The CSV file must be UTF-8.")
    if "\x00" in text:  # PostgreSQL text cannot hold it
        raise errors.InvalidParameter("The CSV file must not contain NUL characters.")
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as exc:  # a field over csv's limit (128 KB), or an unclosed quote
        raise errors.InvalidParameter(f"The CSV file cannot be read: {exc}.")
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

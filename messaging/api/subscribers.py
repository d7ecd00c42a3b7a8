"""A list's subscribers (list, add, remove, CSV export) and broadcasts to them."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView, ApiRequest
from accounts.envelope import PARAM_ERROR
from accounts.parsers import JsonParser
from devices.models import PhoneList, Subscriber
from devices.selectors import get_list_for_account
from messaging import selectors
from messaging.api.common import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    IdempotentMixin,
    as_text,
    first_error,
    ok,
    request_params,
)
from messaging.services import subscriptions


class SubscriberSerializer(serializers.Serializer[Any]):
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

    parser_classes = [JsonParser, FormParser, MultiPartParser]

    class FilterSerializer(serializers.Serializer[Any]):
        state = serializers.ChoiceField(
            choices=["subscribed", "unsubscribed", "all"], required=False, help_text="Default: subscribed."
        )
        cursor = serializers.CharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

    class InputSerializer(serializers.Serializer[Any]):
        number = serializers.CharField(required=False, allow_blank=True, help_text="One number to add.")
        numbers = serializers.JSONField(required=False, help_text="Several: a JSON array, or comma-separated.")

    class PageSerializer(serializers.Serializer[Any]):
        subscribers = SubscriberSerializer(many=True)
        next_cursor = serializers.CharField(allow_null=True)

    class RowErrorSerializer(serializers.Serializer[Any]):
        row = serializers.IntegerField()
        number = serializers.CharField()
        status_code = serializers.CharField()
        error = serializers.CharField()

    class AddedSerializer(serializers.Serializer[Any]):
        added = serializers.ListField(child=serializers.CharField())
        already = serializers.ListField(child=serializers.CharField())
        errors = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]

    @extend_schema(
        operation_id="subscriber_list", parameters=[API_KEY_PARAMETER, FilterSerializer], responses=PageSerializer
    )
    def get(self, request: ApiRequest, token: str) -> Response:
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
    def post(self, request: ApiRequest, token: str) -> Response:
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
    def delete(self, request: ApiRequest, token: str, number: str) -> Response:
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
    def get(self, request: ApiRequest, token: str) -> HttpResponse:
        phone_list = subscriber_list(self.key.account_id, token)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="subscribers-{phone_list.token}.csv"'
        subscriptions.export_subscribers_csv(phone_list=phone_list, out=response)
        return response


class BroadcastApi(IdempotentMixin, ApiKeyView):
    """One text to every current subscriber of the list, as one bulk batch."""

    parser_classes = [JsonParser, FormParser, MultiPartParser]
    idempotency_endpoint = "lists/broadcast"

    class InputSerializer(serializers.Serializer[Any]):
        msg = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, help_text="The text.")
        ref = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=255,
            help_text="Your reference for every message (alias `custom`).",
        )

    class OutputSerializer(serializers.Serializer[Any]):
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
    def post(self, request: ApiRequest, token: str) -> Response:
        params = request_params(request)
        return self.run_idempotent(request, {**params, "list": token}, lambda: self.send(request, token, params))

    def send(self, request: ApiRequest, token: str, params: dict[str, Any]) -> Response:
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

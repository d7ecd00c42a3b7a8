"""Verify: send a one-time code by SMS (`POST /api/v1/verify`), check it
(`POST /api/v1/verify/check`), and read a verification (`GET /api/v1/verify/<id>`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts import errors
from accounts.api import API_KEY_PARAMETER, ApiKeyView, ApiRequest
from accounts.parsers import JsonParser
from messaging import selectors
from messaging.api.common import IdempotentMixin, as_text, drop_empty, ok, represent_with, request_params, validate_with
from messaging.api.send import RecordSerializer
from messaging.lib import numbers
from messaging.models import Verification, VerificationCheck
from messaging.services import accept, verify

# Optional parameters that forms and query strings send as "" when left empty.
EMPTY_MEANS_ABSENT = ("length", "ttl", "template")


class VerifyStartApi(IdempotentMixin, ApiKeyView):
    """Sends a one-time code by SMS through the normal send path; a pending verification of
    the same number and key is replaced (its code stops working)."""

    parser_classes = [JsonParser, FormParser, MultiPartParser]
    idempotency_endpoint = "verify"

    class InputSerializer(serializers.Serializer[Any]):
        list = serializers.CharField(required=False, allow_blank=True, help_text="List token (lst_…).")
        device_id = serializers.CharField(required=False, allow_blank=True, help_text="Pin to one phone (dev_…).")
        # A missing `to` still answers 7 (not 5): see `start`.
        to = serializers.CharField(help_text="The number to verify (E.164, or national in the list's country).")
        length = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=verify.MIN_LENGTH,
            max_value=verify.MAX_LENGTH,
            help_text=f"Digits of the code (default {verify.DEFAULT_LENGTH}).",
        )
        ttl = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=verify.MIN_TTL_SECONDS,
            max_value=verify.MAX_TTL_SECONDS,
            help_text=f"Seconds the code stays valid (default {verify.DEFAULT_TTL_SECONDS}).",
        )
        template = serializers.CharField(
            required=False,
            trim_whitespace=False,
            max_length=verify.MAX_TEMPLATE_LENGTH,
            help_text="The SMS text with {code} where the code goes (default: the list's).",
        )
        ref = serializers.CharField(
            required=False, allow_blank=True, max_length=accept.MAX_REF_LENGTH, help_text="Your reference."
        )

    class OutputSerializer(serializers.Serializer[Any]):
        verification_id = serializers.CharField(source="verification.public_id")
        status = serializers.CharField(source="verification.status")
        to = serializers.CharField(source="verification.to")
        length = serializers.IntegerField(source="verification.length")
        ref = serializers.CharField(source="verification.ref")
        expires_at = serializers.DateTimeField(source="verification.expires_at")
        message_id = serializers.CharField(source="accepted.message.public_id")
        parts = serializers.IntegerField(source="accepted.message.parts")
        cost = serializers.IntegerField(source="accepted.message.cost")
        records = RecordSerializer(many=True, source="accepted.records")

    @extend_schema(
        operation_id="verify_start",
        parameters=[API_KEY_PARAMETER, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: ApiRequest) -> Response:
        params = request_params(request)
        return self.run_idempotent(request, params, lambda: self.start(request, params))

    def start(self, request: ApiRequest, params: dict[str, Any]) -> Response:
        if isinstance(params.get("to"), str):
            params["to"] = numbers.restore_lost_plus(params["to"])
        try:
            data = validate_with(self.InputSerializer, drop_empty(params, EMPTY_MEANS_ABSENT))
        except errors.InvalidParameter:
            # A malformed optional parameter (code 5) comes after the target and `to` checks.
            accept.resolve_target(
                key=self.key, list_token=as_text(params.get("list")), device_id=as_text(params.get("device_id"))
            )
            if not as_text(params.get("to")).strip():
                raise errors.MissingTo()
            raise
        started = verify.start_verification(
            key=self.key,
            to=data.get("to", ""),
            list_token=data.get("list"),
            device_id=data.get("device_id"),
            length=data.get("length"),
            ttl=data.get("ttl"),
            template=data.get("template"),
            ref=data.get("ref", ""),
        )
        return ok(request, represent_with(self.OutputSerializer, started))


class VerifyCheckApi(ApiKeyView):
    """Checks a code: approved (once), denied (wrong; 5 wrong codes lock it), expired or
    too_many_attempts. Every answer to a well-formed check is HTTP 200: read `status`."""

    parser_classes = [JsonParser, FormParser, MultiPartParser]

    class InputSerializer(serializers.Serializer[Any]):
        verification_id = serializers.CharField(
            required=False, allow_blank=True, max_length=40, help_text="The id `POST /api/v1/verify` answered."
        )
        to = serializers.CharField(
            required=False, allow_blank=True, max_length=40, help_text="Or: the number (its newest verification)."
        )
        code = serializers.CharField(required=False, allow_blank=True, max_length=40, help_text="The code to check.")

    class OutputSerializer(serializers.Serializer[Any]):
        verification_id = serializers.CharField(source="verification.public_id")
        status = serializers.ChoiceField(
            source="outcome", choices=VerificationCheck.Outcome.choices, help_text="This check's outcome."
        )
        verification_status = serializers.ChoiceField(source="verification.status", choices=Verification.Status.choices)
        to = serializers.CharField(source="verification.to")
        attempts = serializers.IntegerField(source="verification.attempts", help_text="Wrong codes so far.")
        attempts_left = serializers.IntegerField(source="verification.attempts_left")
        expires_at = serializers.DateTimeField(source="verification.expires_at")

    @extend_schema(
        operation_id="verify_check",
        parameters=[API_KEY_PARAMETER],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: ApiRequest) -> Response:
        params = request_params(request)
        if isinstance(params.get("to"), str):
            params["to"] = numbers.restore_lost_plus(params["to"])
        data = validate_with(self.InputSerializer, params)
        checked = verify.check_verification(
            key=self.key,
            code=data.get("code", ""),
            verification_id=data.get("verification_id", ""),
            to=data.get("to", ""),
        )
        return ok(request, represent_with(self.OutputSerializer, checked))


class MessageStateSerializer(serializers.Serializer[Any]):
    message_id = serializers.CharField(source="public_id")
    status = serializers.CharField()
    device_id = serializers.CharField(source="device.public_id", default=None, allow_null=True)
    device_name = serializers.CharField(source="device.name", default=None, allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


class CheckSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(source="outcome", choices=VerificationCheck.Outcome.choices)
    at = serializers.DateTimeField()


class VerificationSerializer(serializers.Serializer[Any]):
    verification_id = serializers.CharField(source="public_id")
    status = serializers.ChoiceField(choices=Verification.Status.choices)
    to = serializers.CharField()
    length = serializers.IntegerField()
    attempts = serializers.IntegerField(help_text="Wrong codes so far.")
    attempts_left = serializers.IntegerField()
    ref = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    approved_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    message = MessageStateSerializer(allow_null=True, help_text="The SMS that carried the code, and its delivery.")


class VerifyDetailApi(ApiKeyView):
    """One verification: its status, wrong attempts, checks, and its SMS's delivery state."""

    class OutputSerializer(VerificationSerializer):
        checks = CheckSerializer(many=True, source="checks.all")

    @extend_schema(operation_id="verify_detail", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: ApiRequest, verification_id: str) -> Response:
        verification = selectors.get_verification_for_account(
            account_id=self.key.account_id, verification_id=verification_id
        )
        return ok(request, self.OutputSerializer(verification).data)

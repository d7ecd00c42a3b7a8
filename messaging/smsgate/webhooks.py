"""SMSGate's `/webhooks` on the client API (`/3rdparty/v1`, `/api/3rdparty/v1`): the
caller's webhooks, which the server delivers through ipn's outbox in SMSGate's envelope
and signature (docs/smsgate-clients.md). Thin views over `ipn.services`.

A list's login sees and registers its list's webhooks; an API key, the account's."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import errors
from devices import selectors as device_selectors
from ipn import services as ipn_services
from ipn.models import SmsGateWebhook
from messaging.smsgate.auth import SmsGateView

TAGS = ["SMSGate client API"]
EVENTS_HELP = (
    f"One of {', '.join(ipn_services.SMSGATE_EVENTS)}; the other events SMSGate's clients name are refused "
    "with 400 and the reason."
)


class WebhookSerializer(serializers.Serializer[Any]):
    """A webhook as SMSGate writes one (`deviceId` only when it is for one phone)."""

    id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    url = serializers.CharField(max_length=1000)
    event = serializers.CharField(max_length=40, help_text=EVENTS_HELP)
    deviceId = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=40)


def webhook_json(hook: SmsGateWebhook) -> dict[str, Any]:
    found: dict[str, Any] = {"id": hook.public_id, "url": hook.url, "event": hook.event}
    if hook.device is not None:
        found["deviceId"] = hook.device.public_id
    return found


class WebhooksApi(SmsGateView):
    """`GET /webhooks` lists the caller's webhooks; `POST /webhooks` registers one (or, with
    the `id` of one it has, replaces it)."""

    required_scopes = {"GET": "webhooks:list", "POST": "webhooks:write"}

    @extend_schema(tags=TAGS, operation_id="smsgate_webhooks_list", responses={200: WebhookSerializer(many=True)})
    def get(self, request: Request) -> Response:
        caller = self.caller
        hooks = ipn_services.list_smsgate_webhooks(account_id=caller.account_id, phone_list_id=caller.list_scope)
        return Response([webhook_json(hook) for hook in hooks])

    @extend_schema(
        tags=TAGS,
        operation_id="smsgate_webhooks_register",
        request=WebhookSerializer,
        responses={201: WebhookSerializer},
        description="Delivered by the server through the outbox (retries, log, replay), in SMSGate's envelope, "
        "signed with X-Signature and X-Timestamp as the SMSGate app signs (the key: GET /settings, "
        "webhooks.signing_key). An `id` the caller already has replaces that webhook.",
    )
    def post(self, request: Request) -> Response:
        caller = self.caller
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        hook = ipn_services.register_smsgate_webhook(
            account_id=caller.account_id,
            url=data["url"],
            event=data["event"],
            public_id=data.get("id") or None,
            phone_list_id=caller.list_scope,
            device_id=self._device_id(data.get("deviceId")),
        )
        return Response(webhook_json(hook), status=201)

    def _device_id(self, public_id: str | None) -> int | None:
        """The caller's phone with this SMSGate `deviceId`; raises InvalidParameter."""
        if not public_id:
            return None
        try:
            device = device_selectors.get_device_for_account(account_id=self.caller.account_id, public_id=public_id)
        except errors.TargetNotFound:
            device = None
        if device is None or self.caller.list_scope not in (None, device.phone_list_id):
            raise errors.InvalidParameter("Unknown `deviceId`.", param="deviceId")
        return device.pk


class WebhookDetailApi(SmsGateView):
    """`DELETE /webhooks/{id}` removes one of the caller's webhooks (its undelivered events too)."""

    required_scopes = {"DELETE": "webhooks:delete"}

    @extend_schema(tags=TAGS, operation_id="smsgate_webhooks_delete", responses={204: OpenApiResponse()})
    def delete(self, request: Request, webhook_id: str) -> Response:
        caller = self.caller
        ipn_services.delete_smsgate_webhook(
            account_id=caller.account_id, phone_list_id=caller.list_scope, public_id=webhook_id
        )
        return Response(status=204)

"""IPN operations: writing events into the outbox (in the caller's transaction)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.lib import tokens
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import InboundSms, Message

# Event types (SPEC): message.sent, message.delivered, message.failed, message.expired, sms.received.
MESSAGE_EVENT_TYPES = {
    Message.Status.SENT: "message.sent",
    Message.Status.DELIVERED: "message.delivered",
    Message.Status.FAILED: "message.failed",
    Message.Status.EXPIRED: "message.expired",
}
ALL_EVENT_TYPES = [*MESSAGE_EVENT_TYPES.values(), "sms.received"]
MAX_BODY_BYTES = 20_000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def _wants(endpoint: IpnEndpoint | None, event_type: str) -> bool:
    return bool(
        endpoint is not None
        and endpoint.enabled
        and endpoint.url
        and endpoint.disabled_at is None
        and (not endpoint.events or event_type in endpoint.events)
    )


def serialise_body(payload: dict[str, Any]) -> str:
    """Compact UTF-8 JSON, serialised once (R3)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def message_event_data(message: Message) -> dict[str, Any]:
    """The `data` object of a message event (SPEC), with the message's current status (R11)."""
    device = message.device
    return {
        "message_id": message.public_id,
        "ref": message.ref,
        "to": message.to,
        "status": message.status,
        "device_id": device.public_id if device else None,
        "device_name": device.name if device else None,
        "parts": message.parts,
        "error": message.error or None,
        "sent_at": _iso(message.sent_at),
        "delivered_at": _iso(message.delivered_at),
    }


def record_message_event(*, message: Message, status: str, occurred_at: datetime | None = None) -> IpnEvent | None:
    """Writes the event for a message's new status into the outbox, if the account wants
    it. Call inside the transaction that changed the status (R5). Returns the row or None."""
    event_type = MESSAGE_EVENT_TYPES.get(status)  # type: ignore[call-overload]
    if event_type is None:
        return None
    endpoint = IpnEndpoint.objects.filter(account_id=message.account_id).first()
    if not _wants(endpoint, event_type):
        return None
    when = occurred_at or timezone.now()
    payload = {
        "type": event_type,
        "timestamp": _iso(when),
        "occurred_at": _iso(when),
        "data": message_event_data(message),
    }
    return IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account_id=message.account_id,
        type=event_type,
        message=message,
        body=serialise_body(payload),
        occurred_at=when,
    )


def inbound_event_data(inbound: InboundSms) -> dict[str, Any]:
    """The `data` object of an `sms.received` event."""
    return {
        "id": inbound.public_id,
        "from": inbound.sender,
        "msg": inbound.text,
        "at": _iso(inbound.received_at),
        "device_id": inbound.device.public_id if inbound.device else None,
        "list": inbound.phone_list.token,
        "sim": inbound.sim,
    }


def record_inbound_event(*, inbound: InboundSms) -> IpnEvent | None:
    """Writes an `sms.received` event into the outbox, if the account wants it. Call inside
    the transaction that stored the SMS (R5). Returns the row or None."""
    event_type = "sms.received"
    endpoint = IpnEndpoint.objects.filter(account_id=inbound.account_id).first()
    if not _wants(endpoint, event_type):
        return None
    when = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": _iso(when),
        "occurred_at": _iso(inbound.received_at or when),
        "data": inbound_event_data(inbound),
    }
    return IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account_id=inbound.account_id,
        type=event_type,
        body=serialise_body(payload),
        occurred_at=inbound.received_at or when,
    )

"""Callback bodies of messages, received SMS and verifications, built here where they live
and handed to ipn through `ipn.services.record_event`, which picks the account's format and
stores them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ipn import services as ipn_services
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import InboundSms, Message, Verification

# The event of each status a message may end a step in (docs/ipn.md).
MESSAGE_EVENT_TYPES: dict[str, str] = {
    Message.Status.SENT: ipn_services.MESSAGE_SENT,
    Message.Status.DELIVERED: ipn_services.MESSAGE_DELIVERED,
    Message.Status.FAILED: ipn_services.MESSAGE_FAILED,
    Message.Status.EXPIRED: ipn_services.MESSAGE_EXPIRED,
}
# A cancellation has no IPN event (docs/ipn.md); SMSGate webhooks hear of it.
MESSAGE_CANCELLED = "message.cancelled"
# The SMSGate webhook event of each (docs/smsgate-clients.md): SMSGate has no `expired`;
# its app reports a message past its TTL as failed, and so do we.
SMSGATE_EVENTS: dict[str, str] = {
    ipn_services.MESSAGE_SENT: ipn_services.SMSGATE_SMS_SENT,
    ipn_services.MESSAGE_DELIVERED: ipn_services.SMSGATE_SMS_DELIVERED,
    ipn_services.MESSAGE_FAILED: ipn_services.SMSGATE_SMS_FAILED,
    ipn_services.MESSAGE_EXPIRED: ipn_services.SMSGATE_SMS_FAILED,
    MESSAGE_CANCELLED: ipn_services.SMSGATE_SMS_CANCELLED,
}
# Android SmsManager result codes, sent as GenioSms `status_code` when a phone reports a failure.
ANDROID_ERROR_CODES = {
    "GENERIC_FAILURE": 1,
    "RADIO_OFF": 2,
    "NULL_PDU": 3,
    "NO_SERVICE": 4,
    "LIMIT_EXCEEDED": 5,
    "FDN_CHECK_FAILURE": 6,
    "SHORT_CODE_NOT_ALLOWED": 7,
    "SHORT_CODE_NEVER_ALLOWED": 8,
}


def message_event_data(message: Message) -> dict[str, Any]:
    """The `data` object of a message event, with the message's current status."""
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
        "sent_at": ipn_services.iso_time(message.sent_at),
        "delivered_at": ipn_services.iso_time(message.delivered_at),
    }


def request_code(message_id: str) -> str:
    """GenioSms `request_code`: 8 digits, stable for one message (the same on SENT and DELIVERY)."""
    return str(int(hashlib.sha256(message_id.encode()).hexdigest(), 16) % 10**8).zfill(8)


def android_error_code(error: str) -> str:
    """The Android SmsManager code a phone's error text names (`RESULT_ERROR_RADIO_OFF`,
    `radio off`, `2`…); 1 (generic failure) when it names none."""
    name = re.sub(r"[\s-]+", "_", error.strip().upper())
    for key, code in ANDROID_ERROR_CODES.items():
        if key in name:
            return str(code)
    number = re.search(r"\b(\d{1,3})\b", error)
    return number.group(1) if number else str(ANDROID_ERROR_CODES["GENERIC_FAILURE"])


def geniosms_fields(message: Message, event_type: str) -> dict[str, str]:
    """The GenioSms IPN form of a message event (docs/migrating-from-geniosms.md)."""
    ok = event_type != ipn_services.MESSAGE_FAILED
    phone_list = message.phone_list or (message.pinned_device.phone_list if message.pinned_device else None)
    return {
        "status": "RESULT_OK" if ok else "RESULT_ERROR",
        "status_code": ipn_services.ANDROID_RESULT_OK if ok else android_error_code(message.error),
        "id_smsout": message.public_id,
        "request_code": request_code(message.public_id),
        "pin": phone_list.pin if phone_list else "",
        "custom": message.ref,
        "ipn_type": ipn_services.GENIOSMS_IPN_TYPES[event_type],
        "from": message.device.phone_number if message.device else "",
        "to": message.to,
        "msg": message.text,
    }


def smsgate_time(value: datetime | None) -> str | None:
    """A time as the SMSGate app writes it: milliseconds and an offset."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds") if value else None


def smsgate_message_id(message: Message) -> str:
    """The id an SMSGate client knows the message by: the SMSGate message's id for its
    recipients (their `ref`; their `batch_id` is `sgm_…`), else the message's own."""
    return message.ref if message.batch_id.startswith("sgm_") else message.public_id


def smsgate_message_payload(message: Message, event_type: str) -> dict[str, Any]:
    """The `payload` of an `sms:sent`, `sms:delivered` or `sms:failed` webhook, one per
    recipient as the SMSGate app sends them (nulls left out, as its JSON does)."""
    payload: dict[str, Any] = {
        "messageId": smsgate_message_id(message),
        # `phoneNumber` is the app's older name of `recipient`; receivers read either.
        "phoneNumber": message.to,
        "recipient": message.to,
    }
    if message.device is not None and message.device.phone_number:
        payload["sender"] = message.device.phone_number
    if message.sim:
        payload["simNumber"] = message.sim
    if event_type == ipn_services.MESSAGE_SENT:
        payload.update(partsCount=message.parts, sentAt=smsgate_time(message.sent_at))
    elif event_type == ipn_services.MESSAGE_DELIVERED:
        payload["deliveredAt"] = smsgate_time(message.delivered_at)
    elif event_type == MESSAGE_CANCELLED:
        payload["cancelledAt"] = smsgate_time(message.cancelled_at)
    else:
        ended = message.failed_at if event_type == ipn_services.MESSAGE_FAILED else message.expired_at
        reason = message.error or ("TTL expired" if event_type == ipn_services.MESSAGE_EXPIRED else "Failed")
        payload.update(failedAt=smsgate_time(ended), reason=reason)
    return payload


@dataclass(frozen=True)
class MessageCallback:
    """A message's event, in the shape `ipn.services.record_event` takes."""

    message: Message
    type: str
    text_field = "error"

    @property
    def account_id(self) -> int:
        return self.message.account_id

    @property
    def message_id(self) -> int | None:
        return self.message.pk

    def standard_data(self) -> dict[str, Any]:
        return message_event_data(self.message)

    def geniosms_fields(self) -> dict[str, str]:
        return geniosms_fields(self.message, self.type)

    @property
    def smsgate_event(self) -> str | None:
        return SMSGATE_EVENTS.get(self.type)

    def smsgate_scope(self) -> tuple[int | None, int | None]:
        phone_list_id = self.message.phone_list_id
        if phone_list_id is None and self.message.pinned_device is not None:
            phone_list_id = self.message.pinned_device.phone_list_id
        return phone_list_id, self.message.device_id

    def smsgate_payload(self) -> tuple[str, dict[str, Any]]:
        device = self.message.device
        return (device.public_id if device else ""), smsgate_message_payload(self.message, self.type)


def inbound_event_data(inbound: InboundSms) -> dict[str, Any]:
    """The `data` object of an `sms.received` event."""
    return {
        "id": inbound.public_id,
        "from": inbound.sender,
        "msg": inbound.text,
        "at": ipn_services.iso_time(inbound.received_at),
        "device_id": inbound.device.public_id if inbound.device else None,
        "list": inbound.phone_list.token,
        "sim": inbound.sim,
    }


@dataclass(frozen=True)
class InboundCallback:
    """An `sms.received` event (there is none in the GenioSms format)."""

    inbound: InboundSms
    type = ipn_services.SMS_RECEIVED
    text_field = "msg"
    message_id = None

    @property
    def account_id(self) -> int:
        return self.inbound.account_id

    def standard_data(self) -> dict[str, Any]:
        return inbound_event_data(self.inbound)

    def geniosms_fields(self) -> dict[str, str]:
        raise AssertionError("sms.received has no GenioSms form")  # GENIOSMS_IPN_TYPES leaves it out

    smsgate_event = ipn_services.SMSGATE_SMS_RECEIVED

    def smsgate_scope(self) -> tuple[int | None, int | None]:
        return self.inbound.phone_list_id, self.inbound.device_id

    def smsgate_payload(self) -> tuple[str, dict[str, Any]]:
        inbound, device = self.inbound, self.inbound.device
        payload: dict[str, Any] = {
            # The app's is a hash of the content; ours is unique.
            "messageId": inbound.public_id,
            "message": inbound.text,
            "phoneNumber": inbound.sender,
            "sender": inbound.sender,
            "receivedAt": smsgate_time(inbound.received_at),
        }
        if device is not None and device.phone_number:
            payload["recipient"] = device.phone_number
        if inbound.sim:
            payload["simNumber"] = inbound.sim
        return (device.public_id if device else ""), payload


def verification_event_data(verification: Verification) -> dict[str, Any]:
    """The `data` object of a `verify.*` event (never the code: it is not stored)."""
    message = verification.message
    return {
        "verification_id": verification.public_id,
        "to": verification.to,
        "status": verification.status,
        "ref": verification.ref,
        "attempts": verification.attempts,
        "message_id": message.public_id if message else None,
        "created_at": ipn_services.iso_time(verification.created_at),
        "expires_at": ipn_services.iso_time(verification.expires_at),
        "approved_at": ipn_services.iso_time(verification.approved_at),
    }


@dataclass(frozen=True)
class VerificationCallback:
    """A `verify.approved` or `verify.expired` event (none in the GenioSms format: see
    `ipn.services.GENIOSMS_IPN_TYPES`)."""

    verification: Verification
    type: str
    text_field = "ref"

    @property
    def account_id(self) -> int:
        return self.verification.account_id

    @property
    def message_id(self) -> int | None:
        return self.verification.message_id

    def standard_data(self) -> dict[str, Any]:
        return verification_event_data(self.verification)

    def geniosms_fields(self) -> dict[str, str]:
        raise AssertionError("verify events have no GenioSms form")  # GENIOSMS_IPN_TYPES leaves them out

    # SMSGate has no verifications: its webhooks hear of the verification's SMS instead.
    smsgate_event = None

    def smsgate_scope(self) -> tuple[int | None, int | None]:
        raise AssertionError("verify events have no SMSGate form")

    def smsgate_payload(self) -> tuple[str, dict[str, Any]]:
        raise AssertionError("verify events have no SMSGate form")


def record_verification_event(*, verification: Verification, event_type: str) -> IpnEvent | None:
    """Writes a `verify.approved` / `verify.expired` event into the outbox, if the account
    wants it. Call inside the transaction that changed the verification."""
    return ipn_services.record_event(
        event=VerificationCallback(verification=verification, type=event_type), occurred_at=verification.ended_at
    )


def wants_message_event(*, endpoint: IpnEndpoint | None, status: str) -> bool:
    """True if these IPN settings ask for the event of a message's new `status`."""
    event_type = MESSAGE_EVENT_TYPES.get(status)
    return event_type is not None and ipn_services.wants_event(endpoint=endpoint, event_type=event_type)


def record_message_event(
    *, message: Message, status: str, occurred_at: datetime | None = None, endpoint: IpnEndpoint | None = None
) -> IpnEvent | None:
    """Writes the event of a message's new status into the outbox, if the account wants it.
    Call inside the transaction that changed the status. `endpoint`: the account's
    settings when the caller has read them already. Returns the row or None."""
    event_type = MESSAGE_EVENT_TYPES.get(status)
    if event_type is None:
        return None
    event = MessageCallback(message=message, type=event_type)
    return ipn_services.record_event(event=event, occurred_at=occurred_at, endpoint=endpoint)


def record_cancel_event(*, message: Message) -> list[IpnEvent]:
    """Writes the `sms:cancelled` webhook events of a cancelled message (SMSGate webhooks
    only: IPN has no such event). Call inside the transaction that cancelled it."""
    event = MessageCallback(message=message, type=MESSAGE_CANCELLED)
    return ipn_services.record_smsgate_events(event=event, when=message.cancelled_at or message.created_at)


def build_message_event(
    *, message: Message, status: str, occurred_at: datetime | None = None, endpoint: IpnEndpoint | None = None
) -> IpnEvent | None:
    """`record_message_event`'s outbox row, not saved (the caller inserts it in the
    statement or transaction that changes the status), or None."""
    event_type = MESSAGE_EVENT_TYPES.get(status)
    if event_type is None:
        return None
    event = MessageCallback(message=message, type=event_type)
    return ipn_services.build_event(event=event, occurred_at=occurred_at, endpoint=endpoint)


def record_inbound_event(*, inbound: InboundSms) -> IpnEvent | None:
    """Writes an `sms.received` event into the outbox, if the account wants it. Call inside
    the transaction that stored the SMS."""
    return ipn_services.record_event(event=InboundCallback(inbound=inbound), occurred_at=inbound.received_at)

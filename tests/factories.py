"""Plain factory functions for test data: each test states only what it relies on."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from django.utils import timezone

from accounts import services as account_services
from accounts.lib import tokens
from accounts.models import Account, ApiKey
from devices import services as device_services
from devices.models import Device, PhoneList
from messaging.models import Message

_seq = count(1)


def make_account(*, credit: int = 100, email: str | None = None, password: str = "correct horse battery") -> Account:
    account, _user = account_services.create_account(
        email=email or f"user{next(_seq)}@example.com", password=password, credit=credit
    )
    return account


def make_list(*, account: Account, name: str = "Main", pin: str | None = None, country: str = "IT") -> PhoneList:
    return device_services.create_list(account=account, name=name, pin=pin, default_country=country)


def make_api_key(
    *,
    account: Account,
    default_list: PhoneList | None = None,
    allowed_ips: list[str] | None = None,
    cors_origins: list[str] | None = None,
    name: str = "Test API",
) -> tuple[ApiKey, str]:
    return account_services.create_api_key(
        account=account, name=name, default_list=default_list, allowed_ips=allowed_ips, cors_origins=cors_origins
    )


def make_device(*, phone_list: PhoneList, name: str = "Pixel 7", online: bool = False) -> Device:
    """A phone of the list; `online` = connected and seen just now (presence is `Device.objects.online()`)."""
    now = timezone.now()
    return Device.objects.create(
        account_id=phone_list.account_id,
        phone_list=phone_list,
        public_id=tokens.public_id("dev"),
        name=name,
        token_digest=tokens.public_id("digest"),
        is_connected=online,
        last_seen_at=now if online else None,
        connected_at=now if online else None,
    )


def make_enrolled_device(
    *, phone_list: PhoneList, name: str = "Pixel 7", kind: str = Device.Kind.WEBSOCKET
) -> tuple[Device, str]:
    """A phone of the list with a real device token: (device, token)."""
    return device_services.create_device(phone_list=phone_list, name=name, kind=kind)


def make_message(
    *,
    phone_list: PhoneList | None = None,
    pinned_device: Device | None = None,
    to: str = "+393331234567",
    text: str = "Hello",
    cost: int = 1,
    send_at: datetime | None = None,
    ttl: timedelta = timedelta(hours=1),
    status: str = Message.Status.QUEUED,
    device: Device | None = None,
    ref: str = "",
    error: str = "",
) -> Message:
    """A message (queued unless `status` says otherwise) whose cost was really debited
    (as accepting it would); a sent or delivered one carries its timestamps."""
    target_list = phone_list or (pinned_device.phone_list if pinned_device else None)
    assert target_list is not None
    now = timezone.now()
    message = Message.objects.create(
        public_id=tokens.public_id("msg"),
        account_id=target_list.account_id,
        phone_list=target_list,
        pinned_device=pinned_device,
        device=device,
        to=to,
        text=text,
        ref=ref,
        error=error,
        status=status,
        cost=cost,
        created_at=now,
        send_at=send_at or now,
        expires_at=(send_at or now) + ttl,
        sent_at=now if status in (Message.Status.SENT, Message.Status.DELIVERED) else None,
        delivered_at=now if status == Message.Status.DELIVERED else None,
    )
    if cost:
        account_services.debit_credit(account=target_list.account, amount=cost, message=message)
    return message

"""Plain factory functions for test data: each test states only what it relies on."""

from __future__ import annotations

from itertools import count

from django.utils import timezone

from accounts import services as account_services
from accounts.lib import tokens
from accounts.models import Account, ApiKey
from devices import services as device_services
from devices.models import Device, PhoneList

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
    """A phone of the list; `online` = connected and seen just now (R26 presence)."""
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

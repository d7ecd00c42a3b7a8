"""Guarded lookups of lists and phones: other accounts' objects are simply not found."""

from __future__ import annotations

from django.utils import timezone

from accounts import errors
from devices.models import PRESENCE_TTL, Device, PhoneList


def get_list_for_account(*, account_id: int, token: str) -> PhoneList:
    """The account's list with this token; raises TargetNotFound otherwise."""
    found = PhoneList.objects.filter(account_id=account_id, token=token).first()
    if found is None:
        raise errors.TargetNotFound("Unknown list token.")
    return found


def get_device_for_account(*, account_id: int, public_id: str) -> Device:
    """The account's (not removed) device with this id; raises TargetNotFound otherwise."""
    found = (
        Device.objects.select_related("phone_list")
        .filter(account_id=account_id, public_id=public_id, removed_at__isnull=True)
        .first()
    )
    if found is None:
        raise errors.TargetNotFound("Unknown device id.")
    return found


def online_devices(*, phone_list_id: int | None = None, device_id: int | None = None) -> list[Device]:
    """Phones that are connected, enabled and seen within the presence TTL (R26),
    of one list or one pinned device; oldest first."""
    queryset = Device.objects.filter(
        is_enabled=True,
        removed_at__isnull=True,
        is_connected=True,
        last_seen_at__gte=timezone.now() - PRESENCE_TTL,
    )
    if device_id is not None:
        queryset = queryset.filter(pk=device_id)
    else:
        queryset = queryset.filter(phone_list_id=phone_list_id)
    return list(queryset.only("id", "public_id", "name", "is_available").order_by("created_at"))

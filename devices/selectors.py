"""Guarded lookups of lists and phones: other accounts' objects are simply not found."""

from __future__ import annotations

from accounts import errors
from devices.models import Device, PhoneList


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

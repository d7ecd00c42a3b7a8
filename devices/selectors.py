"""Guarded lookups of lists and phones: other accounts' objects are simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
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


@dataclass(frozen=True)
class OnlineDevice:
    """A phone that is online now: what the send API's `records` show of it."""

    public_id: str
    name: str


def online_devices_query(
    *, phone_list_id: int | None = None, device_id: int | None = None
) -> tuple[str, dict[str, Any]]:
    """SQL for the phones online now, as `public_id, name` rows oldest first: connected,
    enabled and seen within the presence TTL (R26), of one list or one pinned device.
    Other statements may embed it (the send API reads it with its INSERT)."""
    column = "id" if device_id is not None else "phone_list_id"
    sql = (
        "SELECT public_id, name FROM devices_device"  # noqa: S608 (the column is one of two names above)
        f" WHERE {column} = %(online_target)s AND is_enabled AND removed_at IS NULL AND is_connected"
        " AND last_seen_at >= %(online_since)s ORDER BY created_at"
    )
    since = connection.ops.adapt_datetimefield_value(timezone.now() - PRESENCE_TTL)
    return sql, {"online_target": device_id if device_id is not None else phone_list_id, "online_since": since}


def online_devices(*, phone_list_id: int | None = None, device_id: int | None = None) -> list[OnlineDevice]:
    """Phones that are connected, enabled and seen within the presence TTL (R26), of one
    list or one pinned device; oldest first."""
    sql, params = online_devices_query(phone_list_id=phone_list_id, device_id=device_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [OnlineDevice(public_id, name) for public_id, name in cursor.fetchall()]

"""Guarded lookups of lists and phones: other accounts' objects are simply not found."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
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


# Stand-ins compiled into the online-phones SQL in place of the two values each send supplies.
_TARGET_STAND_IN = -7_431_911
_TIME_STAND_IN = datetime(2000, 1, 1, tzinfo=UTC)


def _online_rows(*, phone_list_id: int | None, device_id: int | None, at: datetime | None = None) -> QuerySet[Any]:
    devices = Device.objects.online(at=at)
    devices = devices.filter(pk=device_id) if device_id is not None else devices.filter(phone_list_id=phone_list_id)
    return devices.order_by("created_at").values_list("public_id", "name")


@functools.cache
def _online_sql(*, by_device: bool, vendor: str) -> tuple[str, dict[str, Any]]:
    """`_online_rows` compiled once, with named parameters: `%(online_target)s` and
    `%(online_since)s` where its two values go, `%(online_N)s` for its constants."""
    target = _TARGET_STAND_IN
    at = _TIME_STAND_IN + PRESENCE_TTL
    rows = _online_rows(phone_list_id=None if by_device else target, device_id=target if by_device else None, at=at)
    sql, params = rows.query.sql_with_params()
    since = connection.ops.adapt_datetimefield_value(_TIME_STAND_IN)
    names, constants = [], {}
    for index, value in enumerate(params):
        if value == _TARGET_STAND_IN:
            names.append("%(online_target)s")
        elif value == since:
            names.append("%(online_since)s")
        else:
            names.append(f"%(online_{index})s")
            constants[f"online_{index}"] = value
    assert "%(online_target)s" in names and "%(online_since)s" in names, "a stand-in was not found in the SQL"
    return sql.replace("%%", "%%%%") % tuple(names), constants


def online_devices_query(
    *, phone_list_id: int | None = None, device_id: int | None = None
) -> tuple[str, dict[str, Any]]:
    """SQL for `Device.objects.online()`'s phones of one list or one pinned device, as
    `public_id, name` rows oldest first, with its parameters. Other statements may embed
    it (the send API reads it with its INSERT); compiled once, not on every send."""
    sql, constants = _online_sql(by_device=device_id is not None, vendor=connection.vendor)
    since = connection.ops.adapt_datetimefield_value(timezone.now() - PRESENCE_TTL)
    target = device_id if device_id is not None else phone_list_id
    return sql, {**constants, "online_target": target, "online_since": since}


def online_devices(*, phone_list_id: int | None = None, device_id: int | None = None) -> list[OnlineDevice]:
    """`Device.objects.online()`'s phones of one list or one pinned device, oldest first."""
    rows = _online_rows(phone_list_id=phone_list_id, device_id=device_id)
    return [OnlineDevice(public_id, name) for public_id, name in rows]

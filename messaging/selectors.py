"""Reads of messages shared by the API and the panel, and the cached send target.

Every lookup by a customer-supplied id is filtered by the caller's account: another
account's id is simply not found.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts import errors, rawsql
from accounts import services as account_services
from accounts.lib import sqlnames
from accounts.models import ApiKey
from accounts.services import AuthenticatedKey
from devices import selectors as device_selectors
from devices.models import CAP_WINDOWS, Device, PhoneList
from ipn.models import IpnEndpoint, IpnEvent
from messaging.lib import snippets
from messaging.models import InboundSms, Message, MessageEvent, Verification

# How long a list-token lookup is cached; saves and deletes of a list clear it at once.
LIST_CACHE_SECONDS = 300


@dataclass(frozen=True)
class ListTarget:
    """What accepting a message needs to know about a list (cached)."""

    id: int
    account_id: int
    token: str
    default_country: str
    default_ttl_seconds: int


@dataclass(frozen=True)
class SendTarget:
    """Where a message goes: a list, or one pinned phone (and that phone's list)."""

    phone_list: ListTarget
    device_id: int | None = None
    device_public_id: str = ""


def _list_cache_names(*, account_id: int, token: str, pk: int) -> list[str]:
    return [f"sendlist:t:{account_id}:{token}", f"sendlist:i:{pk}"]


def _to_target(phone_list: PhoneList) -> ListTarget:
    return ListTarget(
        phone_list.pk,
        phone_list.account_id,
        phone_list.token,
        phone_list.default_country,
        phone_list.default_ttl_seconds,
    )


def _cached_list(cache_name: str, *, account_id: int, **lookup: Any) -> ListTarget:
    found: ListTarget | None = cache.get(cache_name)
    if found is None:
        row = PhoneList.objects.filter(account_id=account_id, **lookup).first()
        if row is None:
            raise errors.TargetNotFound("Unknown list token.")
        found = _to_target(row)
        for name in _list_cache_names(account_id=found.account_id, token=found.token, pk=found.id):
            cache.set(name, found, LIST_CACHE_SECONDS)
    if found.account_id != account_id:
        raise errors.TargetNotFound("Unknown list token.")
    return found


def forget_list(phone_list: PhoneList) -> None:
    """Drops a list's cached send target, and the cached keys that carry it as their default
    list; runs on every save and delete of a list."""
    cache.delete_many(_list_cache_names(account_id=phone_list.account_id, token=phone_list.token, pk=phone_list.pk))
    account_services.forget_keys_of_list(phone_list_id=phone_list.pk)


def forget_list_on_change(sender: type[PhoneList], instance: PhoneList, **kwargs: Any) -> None:
    # A cache invalidation hook (post_save / post_delete), not domain flow.
    forget_list(instance)


def get_send_target(*, key: AuthenticatedKey | None, account_id: int, list_token: str, device_id: str) -> SendTarget:
    """The list (or pinned phone) a message goes to: `list_token`, `device_id`, or else the
    key's default list. A pinned phone must belong to the account, and to `list_token` when
    both are given. Raises TargetNotFound (code 6)."""
    if device_id:
        device = device_selectors.get_device_for_account(account_id=account_id, public_id=device_id)
        if list_token and device.phone_list.token != list_token:
            raise errors.TargetNotFound("That device is not in that list.")
        return SendTarget(_to_target(device.phone_list), device.pk, device.public_id)
    if list_token:
        return SendTarget(
            _cached_list(f"sendlist:t:{account_id}:{list_token}", account_id=account_id, token=list_token)
        )
    if key is not None and key.default_list_id is not None:
        if key.default_list is not None:
            token, country, ttl = key.default_list
            return SendTarget(ListTarget(key.default_list_id, key.account_id, token, country, ttl))
        # A key cached before it carried its list's settings.
        return SendTarget(
            _cached_list(f"sendlist:i:{key.default_list_id}", pk=key.default_list_id, account_id=account_id)
        )
    raise errors.TargetNotFound("Give a list token (`list`) or a `device_id`: this API key has no default list.")


# --- Messages -----------------------------------------------------------------

MESSAGE_RELATED = ("phone_list", "device")


def get_message_for_account(*, account_id: int, message_id: str) -> Message:
    """The account's message with this public id; raises NotFound (404, code 6) otherwise."""
    found = Message.objects.select_related(*MESSAGE_RELATED).filter(account_id=account_id, public_id=message_id).first()
    if found is None:
        raise errors.NotFound("Unknown message id.")
    return found


# --- Verifications ------------------------------------------------------------

VERIFICATION_RELATED = ("message", "message__device")


def get_verification_for_account(*, account_id: int, verification_id: str) -> Verification:
    """The account's verification with this public id (with its message and phone); raises
    NotFound (404, code 6) otherwise."""
    found = (
        Verification.objects.select_related(*VERIFICATION_RELATED)
        .filter(account_id=account_id, public_id=verification_id)
        .first()
    )
    if found is None:
        raise errors.NotFound("Unknown verification id.")
    return found


def latest_verification_for_number(*, api_key_id: int, to: str) -> Verification:
    """This key's newest verification of the number `to` (E.164); raises NotFound."""
    found = (
        Verification.objects.select_related(*VERIFICATION_RELATED)
        .filter(api_key_id=api_key_id, to=to)
        .order_by("-created_at", "-pk")
        .first()
    )
    if found is None:
        raise errors.NotFound("No verification was started for this number with this API key.")
    return found


def encode_cursor(at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (time, id) a cursor points after; raises InvalidParameter for a bad cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, pk = raw.split("|")
        return datetime.fromisoformat(at), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.InvalidParameter("`cursor` is not a cursor this API gave out.")


def _after_cursor(queryset: QuerySet[Any], field: str, cursor: str | None) -> QuerySet[Any]:
    if not cursor:
        return queryset
    at, pk = decode_cursor(cursor)
    return queryset.filter(Q(**{f"{field}__lt": at}) | Q(**{field: at, "pk__lt": pk}))


def page(queryset: QuerySet[Any], *, field: str, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page newest first by `field` then id, and the cursor of the next page (or None)."""
    rows = list(_after_cursor(queryset, field, cursor).order_by(f"-{field}", "-pk")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(getattr(last, field), last.pk)


def messages_for_account(
    *,
    account_id: int,
    status: str | None = None,
    phone_list_id: int | None = None,
    ref: str | None = None,
    created_from: datetime | None = None,
    created_until: datetime | None = None,
) -> QuerySet[Message]:
    """The account's messages matching the filters (unordered)."""
    queryset = Message.objects.select_related(*MESSAGE_RELATED).filter(account_id=account_id)
    if status:
        queryset = queryset.filter(status=status)
    if phone_list_id is not None:
        queryset = queryset.filter(phone_list_id=phone_list_id)
    if ref:
        queryset = queryset.filter(ref=ref)
    if created_from is not None:
        queryset = queryset.filter(created_at__gte=created_from)
    if created_until is not None:
        queryset = queryset.filter(created_at__lt=created_until)
    return queryset


def inbox_for_account(
    *,
    account_id: int,
    phone_list_id: int | None = None,
    received_from: datetime | None = None,
    received_until: datetime | None = None,
) -> QuerySet[InboundSms]:
    """The account's received SMS matching the filters (unordered)."""
    queryset = InboundSms.objects.select_related("phone_list", "device").filter(account_id=account_id)
    if phone_list_id is not None:
        queryset = queryset.filter(phone_list_id=phone_list_id)
    if received_from is not None:
        queryset = queryset.filter(received_at__gte=received_from)
    if received_until is not None:
        queryset = queryset.filter(received_at__lt=received_until)
    return queryset


def snippet_context(*, account_id: int, base_url: str, key: ApiKey | None = None) -> snippets.Context:
    """The account's real values for the code examples: its key's default list (or first
    list), newest message, a phone, newest IPN event and its IPN settings. Never a key's
    secret: it is not stored."""
    phone_list = (key.default_list if key else None) or PhoneList.objects.filter(account_id=account_id).first()
    message = Message.objects.filter(account_id=account_id).order_by("-created_at").only("public_id").first()
    device = Device.objects.filter(account_id=account_id, removed_at__isnull=True).only("public_id").first()
    endpoint = IpnEndpoint.objects.filter(account_id=account_id).only("secret", "url").first()
    event = IpnEvent.objects.filter(account_id=account_id).order_by("-created_at").only("webhook_id").first()
    verification = Verification.objects.filter(account_id=account_id).order_by("-created_at").only("public_id").first()
    values: dict[str, Any] = {"base_url": base_url}
    if phone_list:
        values["list_token"] = phone_list.token
    if message:
        values["message_id"] = message.public_id
    if device:
        values["device_id"] = device.public_id
    if event:
        values["webhook_id"] = event.webhook_id
    if verification:
        values["verification_id"] = verification.public_id
    if endpoint and endpoint.secret:
        values["ipn_secret"] = endpoint.secret
    if endpoint and endpoint.url:
        values["ipn_url"] = endpoint.url
    return snippets.Context(**values)


# --- Phones' use of their caps ----------------------------------------------------------


def cap_use_by_device(*, device_ids: list[int], now: datetime | None = None) -> dict[int, dict[str, int]]:
    """How many assignments each phone got in the last minute, hour and day (the windows of
    its caps; `dispatch.cap_use` counts one phone's the same way), by phone id."""
    now = now or timezone.now()
    counts = {name: Count("id", filter=Q(at__gt=now - span)) for name, span in CAP_WINDOWS.items()}
    rows: Any = (
        MessageEvent.objects.filter(device_id__in=device_ids, status=Message.Status.ASSIGNED)
        .filter(at__gt=now - max(CAP_WINDOWS.values()))
        .values("device_id")
        .annotate(**counts)
    )
    used = {pk: dict.fromkeys(CAP_WINDOWS, 0) for pk in device_ids}
    for row in rows:
        used[row["device_id"]] = {name: row[name] for name in CAP_WINDOWS}
    return used


def caps_of_devices(devices: list[Device]) -> dict[int, dict[str, dict[str, int | None]]]:
    """Each phone's caps and its use of them: {window: {"limit", "used"}} by phone id
    (`limit` None: no cap). The phones need their list loaded."""
    used = cap_use_by_device(device_ids=[device.pk for device in devices])
    return {
        device.pk: {name: {"limit": limit, "used": used[device.pk][name]} for name, limit in device.caps.items()}
        for device in devices
    }


# --- Open work for the phones a server process holds ---------------------------------


# Open messages (`dispatch.open_messages_for_device`'s conditions) of some lists (not
# pinned) and of some phones (pinned to them): written by hand, with each id list as one
# parameter, for the fleet's pass (accounts/rawsql.py says why).
_OPEN_WORK_SQL = (
    "SELECT DISTINCT {column} FROM {Message} WHERE {Message.status} = %(queued)s"
    " AND {Message.send_at} <= %(now)s AND {Message.expires_at} > %(now)s AND {condition}"
)
_OPEN_WORK_OF = {  # by list, by phone: the column read, and the condition
    True: ("{Message.phone_list}", "{Message.pinned_device} IS NULL AND {Message.phone_list} {ids}"),
    False: ("{Message.pinned_device}", "{Message.pinned_device} {ids}"),
}


@functools.cache
def _open_work_sql(by_list: bool, vendor: str) -> str:
    column, condition = _OPEN_WORK_OF[by_list]
    template = _OPEN_WORK_SQL.replace("{column}", column).replace("{condition}", condition)
    return sqlnames.sql(template, quote=connection.ops.quote_name, Message=Message, ids=rawsql.in_list("ids"))


def lists_with_open_work(list_ids: set[int], device_ids: set[int]) -> tuple[set[int], set[int]]:
    """Which of these lists, and which of these phones, have queued, due, unexpired messages
    waiting (the lists' unpinned ones, the phones' pinned ones): the same messages as
    `dispatch.open_messages_for_device`, asked once for a whole server's phones."""
    params = {"queued": Message.Status.QUEUED.value, "now": connection.ops.adapt_datetimefield_value(timezone.now())}
    found: list[set[int]] = []
    with connection.cursor() as cursor:
        for by_list, ids in ((True, list_ids), (False, device_ids)):
            if not ids:
                found.append(set())
                continue
            cursor.execute(_open_work_sql(by_list, connection.vendor), {**params, "ids": rawsql.list_value(ids)})
            found.append({pk for (pk,) in cursor.fetchall()})
    return found[0], found[1]

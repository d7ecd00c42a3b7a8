"""Business operations on lists and phones."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Least
from django.utils import timezone

from accounts import columns, errors, rawsql
from accounts import services as account_services
from accounts.lib import sqlnames, tokens
from accounts.models import Account
from accounts.services import ThrottlePolicy
from devices.lib.channel_layer import FanoutChannelLayer
from devices.models import CAP_FIELDS, PRESENCE_TTL, Device, PhoneList

logger = logging.getLogger(__name__)

LIST_TOKEN_PREFIX = "lst"
PIN_DIGITS = 8
MIN_LEASE_SECONDS = 10
MAX_LEASE_SECONDS = 3600


def check_country(code: str) -> str:
    """The country code in capitals if phone numbers can be read in it (ISO 3166 alpha-2,
    known to the numbering plans); raises InvalidParameter otherwise: every national
    number sent through a list of an unknown country would be refused."""
    country = code.strip().upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        raise errors.InvalidParameter(
            f"“{code.strip()}” is not a country code: use two letters such as IT, DE or US.", param="default_country"
        )
    return country


def create_list(
    *,
    account: Account,
    name: str,
    pin: str | None = None,
    default_country: str | None = None,
    rate_limit_per_minute: int | None = None,
) -> PhoneList:
    """A new list with a fresh token and a random PIN (or the given one). Raises
    InvalidParameter for a PIN that is not 6–16 digits or is taken, or an unknown country."""
    if pin is not None and not (pin.isdigit() and 6 <= len(pin) <= 16):
        raise errors.InvalidParameter("A PIN is 6 to 16 digits.")
    if rate_limit_per_minute is not None:
        columns.check_integer(rate_limit_per_minute, PhoneList, "rate_limit_per_minute", param="rate_limit_per_minute")
    country = check_country(default_country or settings.DEFAULT_COUNTRY)
    for _ in range(5):
        try:
            with transaction.atomic():
                return PhoneList.objects.create(
                    account=account,
                    name=name,
                    token=tokens.public_id(LIST_TOKEN_PREFIX),
                    pin=pin or tokens.random_pin(PIN_DIGITS),
                    default_country=country,
                    rate_limit_per_minute=rate_limit_per_minute,
                )
        except IntegrityError:
            if pin is not None:
                raise errors.InvalidParameter("That PIN is already used by another list.") from None
    raise RuntimeError("could not find a free PIN")


# --- List settings ----------------------------------------------------------------

# Sentinel for "leave this setting as it is".
UNCHANGED: Any = object()


def regenerate_pin(*, phone_list: PhoneList) -> str:
    """Gives the list a new random PIN and returns it. The old PIN stops new enrolments;
    phones already enrolled keep working."""
    for _ in range(5):
        pin = tokens.random_pin(PIN_DIGITS)
        try:
            with transaction.atomic():
                PhoneList.objects.filter(pk=phone_list.pk).update(pin=pin)
        except IntegrityError:
            continue  # that PIN belongs to another list
        phone_list.pin = pin
        return pin
    raise RuntimeError("could not find a free PIN")


def _column_max(field: str) -> int:
    return columns.integer_range(PhoneList, field)[1]


def _is_cap(value: object, model: type[PhoneList] | type[Device], field: str) -> bool:
    """None (no cap of its own), or a whole number from 1 to what the column holds."""
    if value is None or value is UNCHANGED:
        return True
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 < value <= columns.integer_range(model, field)[1]
    )


def set_device_caps(*, device: Device, minute: int | None, hour: int | None, day: int | None) -> Device:
    """Sets the phone's own caps (None: its list's apply). They apply to its claims at once
    and to its offers within DEVICE_TICK_SECONDS. Raises InvalidParameter for a value that
    is not a positive whole number."""
    values = {"minute": minute, "hour": hour, "day": day}
    for name, value in values.items():
        if not _is_cap(value, Device, CAP_FIELDS[name]):
            raise errors.InvalidParameter(
                f"A cap is a positive number of messages per {name}, or empty for the list's.", param=CAP_FIELDS[name]
            )
    for name, value in values.items():
        setattr(device, CAP_FIELDS[name], value)
    device.save(update_fields=list(CAP_FIELDS.values()))
    if device.kind == Device.Kind.SMSGATE:
        # The SMSGate app applies the per-minute cap itself: it must fetch its settings again.
        transaction.on_commit(lambda: notify_settings_updated(device_id=device.pk))
    return device


def update_list_settings(
    *,
    phone_list: PhoneList,
    name: str = UNCHANGED,
    default_country: str = UNCHANGED,
    rate_limit_per_minute: int | None = UNCHANGED,
    rate_limit_per_hour: int | None = UNCHANGED,
    rate_limit_per_day: int | None = UNCHANGED,
    lease_seconds: int = UNCHANGED,
    default_ttl_seconds: int = UNCHANGED,
    verify_template: str = UNCHANGED,
) -> PhoneList:
    """Changes the given settings (others stay); phones get them in their next `hello`, and
    the caps apply to claims at once (to offers within DEVICE_TICK_SECONDS). Raises
    InvalidParameter for an out-of-range value."""
    if default_country is not UNCHANGED:
        default_country = check_country(str(default_country))
    checks: dict[str, tuple[object, bool, str]] = {
        "name": (name, isinstance(name, str) and 0 < len(name.strip()) <= 100, "A name is 1 to 100 characters."),
        "default_country": (default_country, True, ""),  # checked above
        **{
            field: (
                value,
                _is_cap(value, PhoneList, field),
                f"A cap is a positive number of messages per {name}, or none.",
            )
            for field, name, value in (
                ("rate_limit_per_minute", "minute", rate_limit_per_minute),
                ("rate_limit_per_hour", "hour", rate_limit_per_hour),
                ("rate_limit_per_day", "day", rate_limit_per_day),
            )
        },
        "lease_seconds": (
            lease_seconds,
            isinstance(lease_seconds, int) and MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS,
            f"A lease is {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS} seconds.",
        ),
        "default_ttl_seconds": (
            default_ttl_seconds,
            isinstance(default_ttl_seconds, int) and 60 <= default_ttl_seconds <= 30 * 86400,
            "A time-to-live is 60 seconds to 30 days.",
        ),
        "verify_template": (
            verify_template,
            isinstance(verify_template, str) and "{code}" in verify_template and len(verify_template) <= 300,
            "The verification text must contain {code} (where the code goes) and have at most 300 characters.",
        ),
    }
    fields = []
    old_rate = phone_list.rate_limit_per_minute
    for field, (value, valid, problem) in checks.items():
        if value is UNCHANGED:
            continue
        if not valid:
            raise errors.InvalidParameter(problem, param=field)
        if field == "name":
            value = str(value).strip()
        setattr(phone_list, field, value)
        fields.append(field)
    if fields:
        phone_list.save(update_fields=fields)
    if phone_list.rate_limit_per_minute != old_rate:
        # WebSocket phones get it in their next `hello`; SMSGate phones must be told to
        # fetch their settings again (the limit is part of them).
        transaction.on_commit(lambda: notify_settings_updated(phone_list_id=phone_list.pk))
    return phone_list


# --- Enrolment ----------------------------------------------------------------------

DEVICE_ID_PREFIX = "dev"
DEVICE_TOKEN_PREFIX = "pfd"
# Wrong PINs from one address (IPv6: one /64): 10 per 15 minutes, then lockouts that double
# from 15 minutes up to a day. At worst about 10 guesses a day per address.
ENROL_ADDRESS_POLICY = ThrottlePolicy(
    max_failures=10, window=timedelta(minutes=15), first_lockout=timedelta(minutes=15), max_lockout=timedelta(days=1)
)
# Wrong PINs from everywhere together (the PIN space is shared by all lists): 300 an hour,
# then doubling lockouts up to 6 hours. Under 2.7 million guesses a year against 10^8 PINs.
ENROL_GLOBAL_POLICY = ThrottlePolicy(
    max_failures=300,
    window=timedelta(hours=1),
    first_lockout=timedelta(minutes=5),
    max_lockout=timedelta(hours=6),
    holds_slots=False,
)
ENROL_GLOBAL_SCOPE = "enrol:global"


def enrol_address_scope(client_ip: str) -> str:
    """The throttle scope of an address; IPv6 addresses count per /64 (one subscriber)."""
    return account_services.address_scope("enrol:ip", client_ip)


def device_token_digest(token: str) -> str:
    return tokens.token_digest(token, settings.API_KEY_SECRET)


def create_device(
    *,
    phone_list: PhoneList,
    name: str,
    model: str = "",
    sims: list[Any] | None = None,
    kind: str = Device.Kind.WEBSOCKET,
) -> tuple[Device, str]:
    """A new phone in the list and its secret token (shown this once, stored as a digest).
    Used by enrolment and by the panel's virtual phone (kind `browser`)."""
    token = tokens.generate_token(DEVICE_TOKEN_PREFIX)
    device = Device.objects.create(
        account_id=phone_list.account_id,
        phone_list=phone_list,
        public_id=tokens.public_id(DEVICE_ID_PREFIX),
        name=(name.strip() or "Phone")[:100],
        model=(model or "")[:100],
        kind=kind,
        sims=sims or [],
        token_digest=device_token_digest(token),
    )
    return device, token


def enrol_device(
    *, pin: str, name: str, client_ip: str, model: str = "", sims: list[Any] | None = None
) -> tuple[Device, str]:
    """Joins a phone to the list whose PIN this is; returns the device and its token.
    Wrong PINs are counted per address and globally (a right one never counts; each attempt
    holds a slot while it is checked, so concurrent guesses cannot pass the limit).
    Raises WrongPin, or RateLimited (with `retry_after`) while locked out."""
    scopes = [(enrol_address_scope(client_ip), ENROL_ADDRESS_POLICY), (ENROL_GLOBAL_SCOPE, ENROL_GLOBAL_POLICY)]
    with account_services.guarded_attempt(scopes, wrong=(errors.WrongPin,)):
        phone_list = PhoneList.objects.filter(pin=pin, account__is_active=True).first() if pin.isdigit() else None
        if phone_list is None:
            raise errors.WrongPin()
    return create_device(phone_list=phone_list, name=name, model=model, sims=sims)


def authenticate_device(*, token: str | None) -> Device | None:
    """The enabled, not removed phone of an active account with this token (its list
    loaded), or None. A malformed token is refused without a database query.

    Every phone connect asks this, so it is one hand-written statement: Django compiled
    the equivalent queryset (`select_related("phone_list").filter(...).first()`) anew on
    every call, 0.6 of its 1.0 ms of CPU (docs/benchmarks.md, "10,000 phones")."""
    if not token or not tokens.has_valid_checksum(token, DEVICE_TOKEN_PREFIX):
        return None
    statement, device_fields, list_fields = _authenticate_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(statement, {"digest": device_token_digest(token)})
        row = cursor.fetchone()
    if row is None:
        return None
    device = rawsql.instance(Device, device_fields, row[: len(device_fields)])
    phone_list = rawsql.instance(PhoneList, list_fields, row[len(device_fields) :])
    Device.phone_list.field.set_cached_value(device, phone_list)
    return device


@functools.cache
def _authenticate_statement(vendor: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """`authenticate_device`'s statement (per database vendor: its quoting), and the fields
    of the phone and of its list it reads, in the order of the row."""
    quote = connection.ops.quote_name
    columns = [f"d.{quote(str(field.column))}" for field in Device._meta.concrete_fields]
    columns += [f"l.{quote(str(field.column))}" for field in PhoneList._meta.concrete_fields]
    device_fields = tuple(field.attname for field in Device._meta.concrete_fields)
    list_fields = tuple(field.attname for field in PhoneList._meta.concrete_fields)
    template = (
        f"SELECT {', '.join(columns)} FROM {{Device}} d"  # noqa: S608  (names from the models, no input)
        " JOIN {PhoneList} l ON l.{PhoneList.id} = d.{Device.phone_list}"
        " JOIN {Account} a ON a.{Account.id} = d.{Device.account}"
        " WHERE d.{Device.token_digest} = %(digest)s AND d.{Device.is_enabled} AND d.{Device.removed_at} IS NULL"
        " AND a.{Account.is_active} ORDER BY d.{Device.id} LIMIT 1"
    )
    statement = sqlnames.sql(template, quote=quote, Device=Device, PhoneList=PhoneList, Account=Account)
    return statement, device_fields, list_fields


# --- Telling phones (through the channel layer) -----------------------------------------
# Group names are ASCII: `list.<id>` for every phone of a list, `device.<id>` for one phone.


def list_group(phone_list_id: int) -> str:
    return f"list.{phone_list_id}"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


def offer_group(phone_list_id: int) -> str:
    """The list's offers: one member per server process (devices/list_offers.py) and each
    SMSGate event stream of its phones; every connection of the list is in `list_group`."""
    return f"offers.{phone_list_id}"


def notify_group(group: str, event: dict[str, object]) -> None:
    """Sends a channel-layer event to every member of `group`, in every server process,
    from synchronous code (API views, services, the worker). A hint: failures are logged.

    With Redis this is one synchronous PUBLISH (devices/lib/channel_layer.py), not a trip
    through an event loop in another thread."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, FanoutChannelLayer):
            layer.publish_group(group, event)
        else:
            # One-process mode: the in-memory layer's queues belong to the server's loop.
            async_to_sync(layer.group_send)(group, event)
    except Exception:  # the database is the truth; a lost hint is caught up at the next tick
        logger.warning("could not send %s to %s", event.get("type"), group, exc_info=True)


# SMSGate phones' event streams (devices/smsgate/sse.py) turn these into `SettingsUpdated` /
# `WebhooksUpdated`, and the app fetches its settings or webhooks again.
SETTINGS_UPDATED = "smsgate.settings_updated"
WEBHOOKS_UPDATED = "smsgate.webhooks_updated"


def stream_group(phone_list_id: int) -> str:
    """The SMSGate event streams of a list. Not `list.<id>`: WebSocket consumers there
    have no handler for these events."""
    return f"smsgate.list.{phone_list_id}"


def notify_settings_updated(*, phone_list_id: int | None = None, device_id: int | None = None) -> None:
    """Tells the list's (or one phone's) open SMSGate streams to send `SettingsUpdated`."""
    _notify_streams(SETTINGS_UPDATED, phone_list_id=phone_list_id, device_id=device_id)


def notify_webhooks_updated(*, phone_list_id: int | None = None, device_id: int | None = None) -> None:
    """Tells the list's (or one phone's) open SMSGate streams to send `WebhooksUpdated`."""
    _notify_streams(WEBHOOKS_UPDATED, phone_list_id=phone_list_id, device_id=device_id)


def _notify_streams(event_type: str, *, phone_list_id: int | None, device_id: int | None) -> None:
    # Hints only: the app also fetches both daily, and on every new stream (sse.py).
    groups = [stream_group(phone_list_id)] if phone_list_id is not None else []
    groups += [device_group(device_id)] if device_id is not None else []
    for group in groups:
        notify_group(group, {"type": event_type})


# --- Managing phones ------------------------------------------------------------------

# WebSocket close codes the server uses (documented in docs/device-protocol.md).
CLOSE_BAD_FRAMES = 4400
CLOSE_DISABLED = 4403
CLOSE_IDLE = 4408
CLOSE_REPLACED = 4409
# The server is busy (a restart's reconnect storm): come back after the `retry_after` its
# `error` frame gives. (Like HTTP 503; the standard 1013 "Try Again Later" is one a server
# may not send through Daphne's WebSocket library, which allows 1000 and 3000–4999 only.)
CLOSE_TRY_LATER = 4503


def close_device_connection(*, device_id: int, code: int, reason: str) -> None:
    """Asks the phone's live connection(s), in any server process, to close now (a hint:
    the connection's own periodic check closes it anyway)."""
    notify_group(device_group(device_id), {"type": "device.close", "code": code, "reason": reason})


def deactivate_account(*, account: Account) -> None:
    """Stops the account at once: its API keys, panel sessions and debits (accounts'
    `set_account_active`), and its phones: their claims and new connections are refused,
    and every live connection (WebSocket, SMSGate event stream) is told to close now."""
    if not account_services.set_account_active(account=account, active=False):
        return
    device_ids = list(
        Device.objects.filter(account_id=account.pk, removed_at__isnull=True).values_list("pk", flat=True)
    )

    def close_all() -> None:
        for device_id in device_ids:
            close_device_connection(device_id=device_id, code=CLOSE_DISABLED, reason="account deactivated")

    transaction.on_commit(close_all)


def reactivate_account(*, account: Account) -> None:
    """Lets a deactivated account's keys, users and phones work again."""
    account_services.set_account_active(account=account, active=True)


def rename_device(*, device: Device, name: str) -> Device:
    """Renames the phone; raises InvalidParameter for an empty or too long name."""
    name = name.strip()
    if not 0 < len(name) <= 100:
        raise errors.InvalidParameter("A name is 1 to 100 characters.")
    device.name = name
    device.save(update_fields=["name"])
    return device


def disable_device(*, device: Device) -> None:
    """Stops the phone: its token no longer works and its live connection closes at once."""
    Device.objects.filter(pk=device.pk).update(is_enabled=False, is_connected=False)
    device.is_enabled = False
    transaction.on_commit(lambda: close_device_connection(device_id=device.pk, code=CLOSE_DISABLED, reason="disabled"))


def enable_device(*, device: Device) -> None:
    """Lets a disabled phone connect again (a removed one stays removed)."""
    Device.objects.filter(pk=device.pk, removed_at__isnull=True).update(is_enabled=True)
    device.is_enabled = device.removed_at is None


def remove_device(*, device: Device) -> None:
    """Removes the phone for good: its token stops working and its connection closes."""
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(removed_at=now, is_enabled=False, is_connected=False)
    device.removed_at, device.is_enabled = now, False
    transaction.on_commit(lambda: close_device_connection(device_id=device.pk, code=CLOSE_DISABLED, reason="removed"))


# --- Presence (called by the WebSocket consumer) -----------------------------------------


# PostgreSQL: the row locked, its old channel read and the new connection written in one
# statement (the subquery's snapshot holds the old values).
_MARK_CONNECTED_SQL = """
    UPDATE {Device} SET {Device.is_connected} = TRUE, {Device.connected_at} = %(now)s,
        {Device.last_seen_at} = %(now)s, {Device.channel_name} = %(channel)s
    FROM (SELECT {Device.id} AS id, {Device.channel_name} AS channel FROM {Device}
          WHERE {Device.id} = %(device)s FOR UPDATE) AS previous
    WHERE {Device}.{Device.id} = previous.id
    RETURNING previous.channel
"""


def mark_connected(*, device_id: int, channel_name: str) -> str:
    """Records a new live connection; returns the channel of the one it replaces ("" if none).
    One statement on PostgreSQL (every phone connect runs it), a transaction of two elsewhere."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        statement = sqlnames.sql(_MARK_CONNECTED_SQL, quote=connection.ops.quote_name, Device=Device)
        with connection.cursor() as cursor:
            cursor.execute(statement, {"now": now, "channel": channel_name, "device": device_id})
            row = cursor.fetchone()
        return (row[0] if row else "") or ""
    with transaction.atomic():
        previous = (
            Device.objects.select_for_update().filter(pk=device_id).values_list("channel_name", flat=True).first()
        )
        Device.objects.filter(pk=device_id).update(
            is_connected=True, connected_at=now, last_seen_at=now, channel_name=channel_name
        )
    return previous or ""


def mark_disconnected(*, device_id: int, channel_name: str) -> None:
    """Records that this connection ended, unless a newer one has taken over."""
    Device.objects.filter(pk=device_id, channel_name=channel_name).update(is_connected=False, channel_name="")


def touch_device(*, device_id: int, channel_name: str) -> None:
    """Refreshes the presence lease of this connection."""
    Device.objects.filter(pk=device_id, channel_name=channel_name).update(
        last_seen_at=timezone.now(), is_connected=True
    )


# The fleet's pass (devices/fleet.py) runs the four statements below over the phones and
# lists of one part, each id list bound as one parameter (accounts/rawsql.py): written by
# hand, as the ORM built each anew every time (about 1 ms of Python each) in a thread that
# shares the event loop's interpreter lock with the claims. Their conditions are the ORM's
# (`Device.objects.online()` and the rest); tests/devices/test_services.py compares them.
_TOUCH_SQL = (
    "UPDATE {Device} SET {Device.last_seen_at} = %(now)s, {Device.is_connected} = %(yes)s"
    " WHERE {Device.id} {ids} AND {Device.channel_name} {channels}"
)
_ENABLED_CAPS_SQL = (
    "SELECT d.{Device.id}, {caps} FROM {Device} d"
    " WHERE d.{Device.id} {ids} AND d.{Device.is_enabled} AND d.{Device.removed_at} IS NULL"
    " AND d.{Device.account} IN (SELECT a.{Account.id} FROM {Account} a WHERE a.{Account.is_active})"
)
_AVAILABLE_COUNTS_SQL = (
    "SELECT {Device.phone_list}, COUNT(*) FROM {Device}"
    " WHERE {Device.phone_list} {ids} AND {Device.is_available} AND {Device.kind} <> %(smsgate)s"
    " AND {Device.is_enabled} AND {Device.removed_at} IS NULL AND {Device.is_connected}"
    " AND {Device.last_seen_at} >= %(since)s"
    " GROUP BY {Device.phone_list}"
)
# A list's columns in the order `phone_list_rows` reads them (its model's concrete fields).
PHONE_LIST_COLUMNS: tuple[str, ...] = tuple(field.attname for field in PhoneList._meta.concrete_fields)
_LIST_ROWS_SQL = "SELECT {columns} FROM {PhoneList} WHERE {PhoneList.id} {ids}"


@functools.cache
def _pass_sql(template: str, vendor: str) -> str:
    """One of the pass's statements on this database (formatted once)."""
    quote = connection.ops.quote_name
    device_columns = {field.attname: str(field.column) for field in Device._meta.concrete_fields}
    caps = ", ".join(f"d.{quote(device_columns[name])}" for name in CAP_FIELDS.values())
    columns = ", ".join(quote(str(field.column)) for field in PhoneList._meta.concrete_fields)  # PHONE_LIST_COLUMNS
    return sqlnames.sql(
        template,
        quote=quote,
        Device=Device,
        PhoneList=PhoneList,
        Account=Account,
        ids=rawsql.in_list("ids"),
        channels=rawsql.in_list("channels"),
        caps=caps,
        columns=columns,
    )


def _pass_rows(template: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(_pass_sql(template, connection.vendor), params)
        return cursor.fetchall() if cursor.description else []


def touch_devices(connections: list[tuple[int, str]]) -> None:
    """Refreshes the presence lease of these (phone id, channel name) connections at once,
    in one UPDATE. A channel name belongs to one connection of one phone, so matching both
    lists matches the pairs (a phone whose newer connection took over is left alone, as in
    `touch_device`)."""
    if not connections:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    ids = rawsql.list_value(pk for pk, _ in connections)
    channels = rawsql.list_value(name for _, name in connections)
    _pass_rows(_TOUCH_SQL, {"now": now, "yes": True, "ids": ids, "channels": channels})


def enabled_device_caps(device_ids: set[int]) -> dict[int, tuple[int | None, ...]]:
    """Which of these phones are still enabled, not removed, and of an active account, with
    their own caps (per minute, hour, day: None where the list's apply)."""
    rows = _pass_rows(_ENABLED_CAPS_SQL, {"ids": rawsql.list_value(device_ids)})
    return {pk: tuple(caps) for pk, *caps in rows}


def available_phone_counts(list_ids: set[int]) -> dict[int, int]:
    """How many phones of each of these lists are online (`Device.objects.online()`),
    available and claiming offers over a WebSocket (SMSGate phones fetch their work
    instead), in any server process."""
    since = connection.ops.adapt_datetimefield_value(timezone.now() - PRESENCE_TTL)
    params = {"ids": rawsql.list_value(list_ids), "smsgate": Device.Kind.SMSGATE.value, "since": since}
    return {pk: phones for pk, phones in _pass_rows(_AVAILABLE_COUNTS_SQL, params)}


def phone_list_rows(list_ids: set[int]) -> dict[int, tuple[Any, ...]]:
    """These lists as they are now, by id: each one's values in PHONE_LIST_COLUMNS order
    (the fleet compares them with the list it holds and changes only what changed)."""
    rows = _pass_rows(_LIST_ROWS_SQL, {"ids": rawsql.list_value(list_ids)})
    return {row[0]: tuple(row) for row in rawsql.convert_rows(PhoneList, PHONE_LIST_COLUMNS, rows)}


def set_device_state(*, device_id: int, available: bool, battery: int | None = None, signal: int | None = None) -> None:
    """Stores what a `state` frame says, and refreshes presence."""
    fields: dict[str, Any] = {"is_available": available, "last_seen_at": timezone.now()}
    if battery is not None:
        fields["battery"] = battery
    if signal is not None:
        fields["signal"] = signal
    Device.objects.filter(pk=device_id).update(**fields)


# --- Pauses after phone-side failed sends (docs/device-protocol.md, "Failed sends") ----------

# The first pause; each further phone-side failure in a row doubles it, up to the cap.
PAUSE_FIRST = timedelta(seconds=30)
PAUSE_CAP = timedelta(minutes=30)
# Failures in a row after which the pause is at its cap (30 s · 2^6 > 30 min).
_PAUSE_STEPS = 6


def pause_length(failures_before: int) -> timedelta:
    """How long a phone is paused after a phone-side failure that follows `failures_before` others in a row."""
    doubled: timedelta = PAUSE_FIRST * (2 ** min(failures_before, _PAUSE_STEPS))
    return min(doubled, PAUSE_CAP)


def pause_after_failed_send(*, device: Device, now: datetime) -> datetime:
    """Pauses the phone after a phone-side failed send: 30 s, doubled for each such
    failure in a row before it, at most 30 min. One UPDATE reads the count it doubles
    (two failures at once both count). Returns the end of the pause (also set on `device`)."""
    lengths = [When(failures_in_a_row=n, then=Value(now + pause_length(n))) for n in range(_PAUSE_STEPS)]
    Device.objects.filter(pk=device.pk).update(
        failures_in_a_row=Least(F("failures_in_a_row") + 1, Value(1000)),
        paused_until=Case(*lengths, default=Value(now + PAUSE_CAP)),
    )
    row = Device.objects.filter(pk=device.pk).values_list("paused_until", "failures_in_a_row").first()
    device.paused_until, device.failures_in_a_row = row if row is not None else (None, 0)
    return device.paused_until or now


def end_pause(*, device: Device) -> None:
    """The phone sent an SMS, so its radio works: its pause and its run of failures end."""
    Device.objects.filter(pk=device.pk, failures_in_a_row__gt=0).update(failures_in_a_row=0, paused_until=None)
    device.paused_until, device.failures_in_a_row = None, 0

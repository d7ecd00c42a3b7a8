"""Who sends what: claims, reports, leases and expiry.

The database decides everything here: a claim is one conditional UPDATE whose row
count says who won, every transition is a conditional UPDATE from the statuses it may
leave, and the channel layer only carries hints (R25). The worker steps at the bottom
each do one unit of work and return "more work waiting?" (STYLE 12).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import services as account_services
from devices.models import Device
from ipn import services as ipn_services
from messaging.models import Message, MessageEvent
from messaging.services import offers

logger = logging.getLogger(__name__)

Status = Message.Status

# After this many assignments whose lease lapsed without a report, the message fails (R23).
MAX_ATTEMPTS = 3
# A phone's send rate is measured over this window.
RATE_WINDOW = timedelta(minutes=1)
# The last `send_at` up to which scheduled messages were announced (a hint, see below).
SCHEDULED_WATERMARK_KEY = "dispatch:scheduled-announced-until"
SCHEDULED_LOOKBACK = timedelta(hours=1)

# A report may move a message only out of these statuses. The first tuple is the normal
# path; the second holds the refunded ends that a late `sent`/`delivered` overrules (R24).
REPORT_FROM: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Status.SENT: ((Status.QUEUED, Status.ASSIGNED), (Status.EXPIRED, Status.FAILED, Status.CANCELLED)),
    Status.DELIVERED: (
        (Status.QUEUED, Status.ASSIGNED, Status.SENT),
        (Status.EXPIRED, Status.FAILED, Status.CANCELLED),
    ),
    # Only the current assignee can fail a message, and only before it was sent.
    Status.FAILED: ((Status.ASSIGNED,), ()),
}
REPORT_STATUSES = tuple(REPORT_FROM)


# --- Reads ----------------------------------------------------------------------


def _target_q(device: Device) -> Q:
    """Messages this phone may send: pinned to it, or for its list and not pinned."""
    return Q(pinned_device_id=device.pk) | Q(pinned_device__isnull=True, phone_list_id=device.phone_list_id)


def open_messages_for_device(*, device: Device, limit: int = 100) -> list[Message]:
    """Queued, due, unexpired messages this phone may claim, oldest first."""
    now = timezone.now()
    return list(
        Message.objects.filter(_target_q(device), status=Status.QUEUED, send_at__lte=now, expires_at__gt=now)
        .only("id", "public_id", "to", "text", "parts", "sim", "phone_list_id", "pinned_device_id")
        .order_by("send_at", "created_at", "id")[:limit]
    )


def _under_rate_limit(*, device: Device, now: datetime) -> bool:
    limit = device.phone_list.rate_limit_per_minute
    if not limit:
        return True
    recent = Message.objects.filter(device_id=device.pk, assigned_at__gt=now - RATE_WINDOW).count()
    return recent < limit


# --- Claims ---------------------------------------------------------------------


def claim_message(*, device: Device, message_id: str) -> Message | None:
    """Assigns the message to this phone if it is still open, due, meant for the phone, and
    the phone is enabled, available and under its rate limit. Returns it, or None."""
    now = timezone.now()
    if not _under_rate_limit(device=device, now=now):
        return None
    return _claim(device=device, lookup=Q(public_id=message_id), now=now)


def _claim(*, device: Device, lookup: Q, now: datetime) -> Message | None:
    lease = timedelta(seconds=device.phone_list.lease_seconds)
    phone_may_send = Exists(
        Device.objects.filter(pk=device.pk, is_enabled=True, removed_at__isnull=True, is_available=True)
    )
    with transaction.atomic():
        # One conditional UPDATE decides: 0 rows means another phone got there first.
        won = (
            Message.objects.filter(
                lookup, _target_q(device), status=Status.QUEUED, send_at__lte=now, expires_at__gt=now
            )
            .filter(phone_may_send)
            .update(
                status=Status.ASSIGNED,
                device=device,
                assigned_at=now,
                lease_expires_at=now + lease,
                attempts=F("attempts") + 1,
            )
        )
        if not won:
            return None
        message = Message.objects.get(lookup)
        MessageEvent.objects.create(message=message, status=Status.ASSIGNED, device=device, at=now)
    message.device = device
    return message


def claim_next_messages(*, device: Device, limit: int = 10, order: str = "fifo") -> list[Message]:
    """For pull-style phones (fetching = claiming): the phone's still-leased assignments
    (an idempotent re-fetch) plus newly claimed open messages, up to `limit` in all."""
    now = timezone.now()
    held = list(
        Message.objects.filter(device_id=device.pk, status=Status.ASSIGNED, lease_expires_at__gt=now).order_by(
            "assigned_at", "id"
        )[:limit]
    )
    wanted = limit - len(held)
    if wanted <= 0:
        return held
    rate = device.phone_list.rate_limit_per_minute
    if rate:
        recent = Message.objects.filter(device_id=device.pk, assigned_at__gt=now - RATE_WINDOW).count()
        wanted = min(wanted, rate - recent)
    ordering = ("send_at", "created_at", "id") if order == "fifo" else ("-send_at", "-created_at", "-id")
    candidates = list(
        Message.objects.filter(_target_q(device), status=Status.QUEUED, send_at__lte=now, expires_at__gt=now)
        .order_by(*ordering)
        .values_list("pk", flat=True)[: max(wanted, 0) * 2]
    )
    claimed: list[Message] = []
    for pk in candidates:
        if len(claimed) >= wanted:
            break
        message = _claim(device=device, lookup=Q(pk=pk), now=now)
        if message is not None:
            claimed.append(message)
    return held + claimed


# --- Reports --------------------------------------------------------------------


def _reporting_message(*, device: Device, message_id: str) -> Message | None:
    """The message if this phone holds it or held it before (a late report, R24)."""
    message = Message.objects.filter(public_id=message_id, account_id=device.account_id).first()
    if message is None:
        return None
    if message.device_id == device.pk:
        return message
    held_before = MessageEvent.objects.filter(message=message, device=device, status=Status.ASSIGNED).exists()
    return message if held_before else None


def _report_fields(*, device: Device, status: str, error: str, at: datetime) -> dict[str, Any]:
    if status == Status.SENT:
        return {"sent_at": at, "device": device, "lease_expires_at": None, "error": ""}
    if status == Status.DELIVERED:
        return {"delivered_at": at, "sent_at": Coalesce("sent_at", at), "device": device, "lease_expires_at": None}
    return {"failed_at": at, "error": error[:500] or "The phone reported a failure.", "lease_expires_at": None}


def report_message(
    *, device: Device, message_id: str, status: str, error: str = "", at: datetime | None = None
) -> Message | None:
    """Records a phone's `sent`/`delivered`/`failed` report. Never moves a message backwards;
    duplicates change nothing. Returns the message (current state), or None if the phone
    never held it. Raises ValueError for another status."""
    if status not in REPORT_FROM:
        raise ValueError(f"unknown report status {status!r}")
    message = _reporting_message(device=device, message_id=message_id)
    if message is None:
        return None
    now = timezone.now()
    when = min(at, now) if at is not None else now
    when = max(when, message.created_at)
    if status == Status.FAILED and message.device_id != device.pk:
        return message  # a previous holder's failure: the message is someone else's now
    normal, overruled = REPORT_FROM[status]
    fields = _report_fields(device=device, status=status, error=error, at=when)
    with transaction.atomic():
        base = Message.objects.filter(pk=message.pk)
        changed = base.filter(status__in=normal).update(status=status, **fields)
        reversed_refund = False
        if not changed and overruled:
            # A late report of what really happened wins over expiry or a lapsed lease (R24).
            changed = base.filter(status__in=overruled).update(status=status, **fields)
            reversed_refund = bool(changed)
        message = Message.objects.select_related("device").get(pk=message.pk)
        if not changed:
            return message
        MessageEvent.objects.create(message=message, status=status, device=device, detail=error[:500], at=when)
        if status == Status.FAILED:
            account_services.refund_credit(message=message, reason=f"SMS {message.public_id} failed")
        elif reversed_refund:
            account_services.reverse_refund(message=message, reason=f"SMS {message.public_id} was sent after all")
        ipn_services.record_message_event(message=message, status=status, occurred_at=when)
    return message


# --- Ends without a report (worker) -------------------------------------------------


def _end_message(*, pk: int, status: str, lookup: Q, error: str, detail: str) -> bool:
    """Moves one open message to a refunded end (`failed`/`expired`) with its event,
    refund and IPN event in one transaction. True if this call made the change."""
    now = timezone.now()
    stamp = {Status.FAILED: "failed_at", Status.EXPIRED: "expired_at"}[status]  # type: ignore[index]
    with transaction.atomic():
        changed = Message.objects.filter(lookup, pk=pk).update(
            status=status, lease_expires_at=None, error=error, **{stamp: now}
        )
        if not changed:
            return False
        message = Message.objects.select_related("device").get(pk=pk)
        MessageEvent.objects.create(message=message, status=status, device=message.device, detail=detail, at=now)
        account_services.refund_credit(message=message, reason=f"SMS {message.public_id} {status}")
        ipn_services.record_message_event(message=message, status=status, occurred_at=now)
    return True


def requeue_one_expired_lease() -> bool:
    """Step: puts one assignment whose lease lapsed back in the queue and re-offers it, or
    fails it (with a refund) after MAX_ATTEMPTS assignments. Returns "more work waiting?"."""
    now = timezone.now()
    candidate = (
        Message.objects.filter(status=Status.ASSIGNED, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values_list("pk", "attempts")
        .first()
    )
    if candidate is None:
        return False
    pk, attempts = candidate
    lapsed = Q(status=Status.ASSIGNED, lease_expires_at__lt=now)
    if attempts >= MAX_ATTEMPTS:
        _end_message(
            pk=pk,
            status=Status.FAILED,
            lookup=lapsed,
            error=f"No phone reported on it after {attempts} assignments.",
            detail="lease lapsed; no attempts left",
        )
        return True
    with transaction.atomic():
        if Message.objects.filter(lapsed, pk=pk).update(status=Status.QUEUED, lease_expires_at=None):
            message = Message.objects.get(pk=pk)
            MessageEvent.objects.create(message=message, status=Status.QUEUED, detail="lease lapsed; offered again")
            transaction.on_commit(lambda: offers.offer_message(message=message))
    return True


def expire_one_overdue_message() -> bool:
    """Step: ends one open message whose TTL has passed as `expired`, refunds it and
    writes its IPN event. Returns "more work waiting?"."""
    now = timezone.now()
    overdue = Q(status__in=Message.OPEN_STATUSES, expires_at__lte=now)
    pk = Message.objects.filter(overdue).order_by("expires_at").values_list("pk", flat=True).first()
    if pk is None:
        return False
    _end_message(pk=pk, status=Status.EXPIRED, lookup=overdue, error="", detail="no phone sent it before its TTL")
    return True


def offer_due_scheduled_messages() -> bool:
    """Step: tells the phones of every list with scheduled messages that became due since
    the last call. A watermark in the cache remembers how far it got; losing it only means
    a repeated hint, since phones also pull open work on their own. Returns False."""
    now = timezone.now()
    since = cache.get(SCHEDULED_WATERMARK_KEY) or now - SCHEDULED_LOOKBACK
    if since >= now:
        return False
    targets = set(
        Message.objects.filter(status=Status.QUEUED, send_at__gt=since, send_at__lte=now)
        .filter(send_at__gt=F("created_at"))
        .values_list("phone_list_id", "pinned_device_id")
        .distinct()
    )
    cache.set(SCHEDULED_WATERMARK_KEY, now, timeout=None)
    if targets:
        list_ids = {list_id for list_id, pinned in targets if pinned is None and list_id is not None}
        device_ids = {pinned for _list_id, pinned in targets if pinned is not None}
        transaction.on_commit(lambda: offers.announce_work(phone_list_ids=list_ids, device_ids=device_ids))
    return False

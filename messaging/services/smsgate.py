"""SMSGate's client API on Phonefleet's own operations: messages with several recipients,
their states in SMSGate's words, phones, list settings and the inbox.

One SMSGate message (an id and up to 100 `phoneNumbers`) is one Phonefleet message per
recipient, stored exactly as a bulk send is (`accept.store_messages`: one conditional
debit for all parts, one ledger debit per message, all or nothing) as one batch; a
`SmsGateMessage` row keeps the SMSGate id (unique per account), the batch and what
SMSGate asked that Phonefleet has no use for. Each recipient's message carries the
SMSGate id as its `ref`, so Phonefleet's own callbacks name it too.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from accounts import errors
from accounts.lib import tokens
from accounts.services import AuthenticatedKey
from devices import selectors as device_selectors
from devices import services as device_services
from devices.models import Device, PhoneList
from devices.smsgate import sse, wire
from messaging import selectors
from messaging.models import InboundSms, Message, SmsGateMessage
from messaging.services import accept, offers

# The batch of an SMSGate message's recipients: `sgm_…` (a bulk send's is `bat_…`).
BATCH_ID_PREFIX = "sgm"
MAX_RECIPIENTS = 100
MAX_ID_LENGTH = 36
ID_PATTERN = re.compile(r"[A-Za-z0-9._:~@+=-]{1,36}")
GENERATED_ID_CHARS = string.ascii_letters + string.digits + "_-"
GENERATED_ID_LENGTH = 21
MIN_PRIORITY, MAX_PRIORITY = -128, 127

# Phonefleet status → SMSGate recipient state.
STATE_OF: dict[str, str] = {
    Message.Status.QUEUED: "Pending",
    Message.Status.ASSIGNED: "Processed",
    Message.Status.SENT: "Sent",
    Message.Status.DELIVERED: "Delivered",
    Message.Status.FAILED: "Failed",
    Message.Status.EXPIRED: "Failed",
    Message.Status.CANCELLED: "Cancelled",
}
STATES = ("Pending", "Processed", "Sent", "Delivered", "Failed", "Cancelled")


class DuplicateMessageId(errors.Conflict):
    default_message = "A message with this id already exists."


@dataclass(frozen=True)
class Recipient:
    """One recipient's message, as a state reads it."""

    public_id: str
    to: str
    status: str
    error: str
    device_public_id: str | None
    created_at: datetime
    assigned_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelled_at: datetime | None
    text: str


@dataclass(frozen=True)
class MessageState:
    """An SMSGate message and its recipients' messages, in the order they were given."""

    message: SmsGateMessage
    recipients: list[Recipient]

    @property
    def state(self) -> str:
        return aggregate_state(STATE_OF[r.status] for r in self.recipients)


def smsgate_message_id(*, batch_id: str, ref: str, public_id: str) -> str:
    """The SMSGate message id a Phonefleet message belongs to: its `ref` when it is a
    recipient of an SMSGate message (batch `sgm_…`), else its own public id."""
    return ref if batch_id.startswith(BATCH_ID_PREFIX + "_") else public_id


def aggregate_state(states: Iterable[str]) -> str:
    """The message's state from its recipients' states, by the SMSGate app's rule: any
    Pending → Pending; else any Cancelling, then any Cancelled; else any Processed; else all
    Failed → Failed; all Delivered → Delivered; otherwise Sent."""
    found = list(states)
    for state in ("Pending", "Cancelling", "Cancelled", "Processed"):
        if state in found:
            return state
    if found and all(state == "Failed" for state in found):
        return "Failed"
    if found and all(state == "Delivered" for state in found):
        return "Delivered"
    return "Sent"


# --- Sending ---------------------------------------------------------------------------


def new_message_id() -> str:
    """An SMSGate-style id (21 URL-safe characters) for a message the client gave none."""
    return "".join(secrets.choice(GENERATED_ID_CHARS) for _ in range(GENERATED_ID_LENGTH))


def _target(*, key: AuthenticatedKey, login: str, device_id: str) -> selectors.SendTarget:
    """The list (or pinned phone) of an SMSGate message: the login's list, or the key's
    default list, or the account's only list; `deviceId` pins one phone of it."""
    list_token = key.default_list[0] if login and key.default_list else ""
    if not list_token and key.default_list_id is None and not device_id:
        tokens_of_lists = list(PhoneList.objects.filter(account_id=key.account_id).values_list("token", flat=True)[:2])
        if len(tokens_of_lists) != 1:
            raise errors.TargetNotFound(
                "This API key has no default list: give it one in the panel, or name a phone with `deviceId`."
            )
        list_token = tokens_of_lists[0]
    return accept.resolve_target(key=key, list_token=list_token, device_id=device_id)


def send_message(
    *,
    key: AuthenticatedKey,
    login: str = "",
    message_id: str | None,
    device_id: str,
    phone_numbers: list[str],
    text: str,
    sim: int | None = None,
    ttl: int | None = None,
    valid_until: datetime | None = None,
    schedule_at: datetime | None = None,
    priority: int = 0,
    with_delivery_report: bool = True,
) -> MessageState:
    """Queues one SMSGate message: one Phonefleet message per recipient, credit for all of
    them taken at once (all or nothing), offered to the phones after commit. Raises
    TargetNotFound, MissingTo, MissingMsg, InvalidParameter (any bad recipient refuses the
    whole message), DuplicateMessageId, InsufficientCredit or SpendingCapReached."""
    if message_id is not None and not ID_PATTERN.fullmatch(message_id):
        raise errors.InvalidParameter(
            f"`id` is 1 to {MAX_ID_LENGTH} letters, digits or ._:~@+=- characters.", param="id"
        )
    target = _target(key=key, login=login, device_id=device_id)
    if not phone_numbers:
        raise errors.MissingTo("`phoneNumbers` needs at least one number.", param="phoneNumbers")
    accept.check_required(to=phone_numbers[0], text=text)
    if len(phone_numbers) > MAX_RECIPIENTS:
        raise errors.InvalidParameter(f"At most {MAX_RECIPIENTS} `phoneNumbers` per message.", param="phoneNumbers")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise errors.InvalidParameter(f"`priority` is {MIN_PRIORITY} to {MAX_PRIORITY}.", param="priority")
    if ttl is not None and valid_until is not None:
        raise errors.InvalidParameter("Give `ttl` or `validUntil`, not both.", param="ttl")
    if valid_until is not None:
        start = max(schedule_at or timezone.now(), timezone.now())
        ttl = int((valid_until - start).total_seconds())
        if ttl < 1:
            raise errors.InvalidParameter(
                "`validUntil` is not after the time the message may be sent.", param="validUntil"
            )
    options = accept.check_options(target=target, sim=sim, ttl=ttl, send_at=schedule_at)
    external_id = message_id or new_message_id()
    batch_id = tokens.public_id(BATCH_ID_PREFIX)
    messages: list[accept.NewMessage] = []
    seen: set[str] = set()
    for number in phone_numbers:
        try:
            message = accept.build_message(
                key=key, target=target, to=number, text=text, ref=external_id, options=options, batch_id=batch_id
            )
        except errors.InvalidParameter as exc:
            raise errors.InvalidParameter(f"{number[:40]!r}: {exc.message}", param="phoneNumbers")
        if message.to in seen:
            raise errors.InvalidParameter(f"{number[:40]!r} is given twice.", param="phoneNumbers")
        seen.add(message.to)
        messages.append(message)
    with transaction.atomic():
        try:
            with transaction.atomic():
                # A repeated id: the unique constraint refuses it (two at once: the second waits, then fails).
                row = SmsGateMessage.objects.create(
                    account_id=key.account_id,
                    external_id=external_id,
                    batch_id=batch_id,
                    phone_list_id=target.phone_list.id,
                    api_key_id=None if login else key.id,
                    login=login,
                    device_id=target.device_public_id,
                    with_delivery_report=with_delivery_report,
                    priority=priority,
                )
        except IntegrityError:
            raise DuplicateMessageId(f"A message with id {external_id!r} already exists.")
        accept.store_messages(account_id=key.account_id, messages=messages, reason="SMSGate message")
        if options.send_at <= timezone.now():
            lists = set() if target.device_id else {target.phone_list.id}
            devices = {target.device_id} if target.device_id else set()
            transaction.on_commit(lambda: offers.announce_work(phone_list_ids=lists, device_ids=devices))
    now = row.created_at
    recipients = [
        Recipient(m.public_id, m.to, Message.Status.QUEUED, "", None, now, None, None, None, None, None, None, m.text)
        for m in messages
    ]
    return MessageState(row, recipients)


# --- Reading ---------------------------------------------------------------------------

_RECIPIENT_FIELDS = (
    "batch_id",
    "public_id",
    "to",
    "status",
    "error",
    "device__public_id",
    "created_at",
    "assigned_at",
    "sent_at",
    "delivered_at",
    "failed_at",
    "expired_at",
    "cancelled_at",
    "text",
)


def _recipients_of(rows: list[SmsGateMessage]) -> dict[str, list[Recipient]]:
    found: dict[str, list[Recipient]] = {row.batch_id: [] for row in rows}
    if not rows:
        return found
    account_id = rows[0].account_id
    values = (
        Message.objects.filter(account_id=account_id, batch_id__in=list(found))
        .order_by("id")
        .values_list(*_RECIPIENT_FIELDS)
    )
    for batch_id, *fields in values:
        found[batch_id].append(Recipient(*fields))
    return found


def messages_of(*, account_id: int, phone_list_id: int | None) -> QuerySet[SmsGateMessage]:
    """The SMSGate messages a caller may read: the account's, or only one list's."""
    rows = SmsGateMessage.objects.filter(account_id=account_id)
    return rows.filter(phone_list_id=phone_list_id) if phone_list_id is not None else rows


def get_message_state(*, account_id: int, phone_list_id: int | None, message_id: str) -> MessageState:
    """The caller's SMSGate message with this id and its recipients; raises NotFound."""
    row = messages_of(account_id=account_id, phone_list_id=phone_list_id).filter(external_id=message_id[:40]).first()
    if row is None:
        raise errors.NotFound("Unknown message id.")
    return MessageState(row, _recipients_of([row])[row.batch_id])


def _with_state(rows: QuerySet[SmsGateMessage]) -> QuerySet[SmsGateMessage]:
    """Annotates each message's aggregated state (`aggregate_state` in SQL)."""
    of_batch = Message.objects.filter(batch_id=OuterRef("batch_id"), account_id=OuterRef("account_id"))
    return rows.annotate(
        state=Case(
            When(Exists(of_batch.filter(status=Message.Status.QUEUED)), then=Value("Pending")),
            When(Exists(of_batch.filter(status=Message.Status.CANCELLED)), then=Value("Cancelled")),
            When(Exists(of_batch.filter(status=Message.Status.ASSIGNED)), then=Value("Processed")),
            When(
                ~Exists(of_batch.exclude(status__in=[Message.Status.FAILED, Message.Status.EXPIRED])),
                then=Value("Failed"),
            ),
            When(~Exists(of_batch.exclude(status=Message.Status.DELIVERED)), then=Value("Delivered")),
            default=Value("Sent"),
        )
    )


@dataclass(frozen=True)
class MessagePage:
    states: list[MessageState]
    total: int


def list_messages(
    *,
    account_id: int,
    phone_list_id: int | None,
    since: datetime | None = None,
    until: datetime | None = None,
    state: str = "",
    device_id: str = "",
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = True,
) -> MessagePage:
    """A page of the caller's SMSGate messages, filtered by creation time, state and phone
    (the one asked for or the one that took a recipient), with the total that match."""
    rows = messages_of(account_id=account_id, phone_list_id=phone_list_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if device_id:
        took = Message.objects.filter(
            account_id=OuterRef("account_id"), batch_id=OuterRef("batch_id"), device__public_id=device_id
        )
        rows = rows.filter(Q(device_id=device_id) | Exists(took))
    if state:
        rows = _with_state(rows).filter(state=state)  # type: ignore[misc]  # the annotation
    total = rows.count()
    order = ("-created_at", "-id") if newest_first else ("created_at", "id")
    page = list(rows.order_by(*order)[offset : offset + limit])
    recipients = _recipients_of(page)
    return MessagePage([MessageState(row, recipients[row.batch_id]) for row in page], total)


# --- Cancelling ------------------------------------------------------------------------


def cancel_message(*, account_id: int, phone_list_id: int | None, message_id: str) -> MessageState:
    """Cancels every recipient still queued (each refunded once). Raises NotFound, or Conflict
    when no recipient could be cancelled because phones have them already."""
    found = get_message_state(account_id=account_id, phone_list_id=phone_list_id, message_id=message_id)
    queued = Message.objects.filter(
        account_id=account_id, batch_id=found.message.batch_id, status=Message.Status.QUEUED
    ).select_related(*selectors.MESSAGE_RELATED)
    cancelled = sum(
        accept.cancel_if_queued(message=message, detail="Cancelled through the SMSGate API") for message in queued
    )
    after = get_message_state(account_id=account_id, phone_list_id=phone_list_id, message_id=message_id)
    if not cancelled and any(r.status != Message.Status.CANCELLED for r in after.recipients):
        raise errors.Conflict(f"Only a pending message can be cancelled; this one is {after.state}.")
    return after


# --- Phones ------------------------------------------------------------------------------


def devices_of(*, account_id: int, phone_list_id: int | None) -> list[Device]:
    """The caller's phones (not removed): one list's, or the account's."""
    rows = Device.objects.filter(account_id=account_id, removed_at__isnull=True)
    if phone_list_id is not None:
        rows = rows.filter(phone_list_id=phone_list_id)
    return list(rows.order_by("created_at", "id"))


def remove_device(*, account_id: int, phone_list_id: int | None, device_id: str) -> None:
    """Removes the caller's phone for good (as the panel does); raises NotFound."""
    try:
        device = device_selectors.get_device_for_account(account_id=account_id, public_id=device_id[:40])
    except errors.TargetNotFound:
        raise errors.NotFound("Unknown device id.")
    if phone_list_id is not None and device.phone_list_id != phone_list_id:
        raise errors.NotFound("Unknown device id.")
    device_services.remove_device(device=device)


# --- Inbox -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboundSms]
    total: int


def list_inbox(
    *,
    account_id: int,
    phone_list_id: int | None,
    since: datetime | None = None,
    until: datetime | None = None,
    device_id: str = "",
    limit: int = 50,
    offset: int = 0,
) -> InboxPage:
    """A page of the SMS the caller's phones received, newest first, with the total."""
    rows = InboundSms.objects.filter(account_id=account_id)
    if phone_list_id is not None:
        rows = rows.filter(phone_list_id=phone_list_id)
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    if device_id:
        rows = rows.filter(device__public_id=device_id)
    total = rows.count()
    page = list(rows.select_related("device").order_by("-received_at", "-id")[offset : offset + limit])
    return InboxPage(page, total)


def request_inbox_export(
    *, account_id: int, phone_list_id: int | None, device_id: str, since: datetime, until: datetime
) -> int:
    """Asks the caller's SMSGate phones (or the one named) to send again, as `sms:received`
    webhooks to this server, the SMS they received between `since` and `until`; the inbox
    keeps each SMS once (and callbacks go out for the ones it did not have). Returns how
    many phones were asked (a phone without an open event stream hears nothing). Raises
    InvalidParameter for an empty period or when no phone runs the SMSGate app (other phones
    keep no inbox to send again), NotFound for an unknown phone."""
    if until <= since:
        raise errors.InvalidParameter("`until` must be after `since`.", param="until")
    phones = Device.objects.filter(account_id=account_id, removed_at__isnull=True, is_enabled=True)
    if phone_list_id is not None:
        phones = phones.filter(phone_list_id=phone_list_id)
    if device_id:
        phones = phones.filter(public_id=device_id[:40])
        if not phones.exists():
            raise errors.NotFound("Unknown device id.")
    ids = list(phones.filter(kind=Device.Kind.SMSGATE).values_list("pk", flat=True))
    if not ids:
        raise errors.InvalidParameter(
            "Only phones running the SMSGate app can send the SMS they received again, and there is none here.",
            param="deviceId",
        )
    data = json.dumps(
        {
            "since": wire.format_datetime(since),
            "until": wire.format_datetime(until),
            # Our receiver takes each SMS as its own webhook (`sms:received`).
            "messageTypes": "SMS",
            "triggerWebhooks": True,
        }
    )
    for pk in ids:
        transaction.on_commit(_export_request(device_id=pk, data=data))
    return len(ids)


def _export_request(*, device_id: int, data: str) -> Callable[[], None]:
    event: dict[str, object] = {"type": sse.EXPORT_REQUESTED, "data": data}
    return lambda: device_services.notify_group(device_services.device_group(device_id), event)

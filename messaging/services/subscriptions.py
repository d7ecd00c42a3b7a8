"""List subscribers: the OK/DEL keywords, the panel and the API, and broadcasts.

A subscription change is one conditional write, so whoever runs it (two phones that got
the same SMS, two API calls) exactly one caller sees "changed" and sends the optional
confirmation reply. Numbers are stored in E.164, read in the list's default country.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from typing import Protocol

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import errors
from accounts.services import AuthenticatedKey
from devices.models import PhoneList, Subscriber
from messaging.lib import numbers
from messaging.models import InboundSms
from messaging.services import accept

logger = logging.getLogger(__name__)

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
# The texts that are keywords once trimmed, in any case (GenioSms: "OK" joins, "DEL" leaves).
KEYWORDS = {"OK": SUBSCRIBE, "DEL": UNSUBSCRIBE}
# The `ref` of confirmation replies, echoed in IPN callbacks so receivers can tell them apart.
REPLY_REFS = {SUBSCRIBE: "phonefleet:subscribed", UNSUBSCRIBE: "phonefleet:unsubscribed"}
MAX_IMPORT = accept.MAX_BULK_ROWS
MAX_REPLY_LENGTH = 160


class Writable(Protocol):
    def write(self, content: str, /) -> object: ...


@dataclass(frozen=True)
class Change:
    """The outcome of subscribe/unsubscribe: the number in E.164 and whether this call changed it."""

    number: str
    changed: bool


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    # (1-based position, the text given, why it was refused)
    errors: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class KeywordResult:
    keyword: str
    change: Change
    reply: accept.NewMessage | None = None
    # Why no reply was queued although replies are on ("" when one was, or none was wanted).
    reply_skipped: str = ""


def normalise(*, phone_list: PhoneList, number: str) -> str:
    """`number` in E.164, read in the list's default country; raises InvalidParameter.
    A leading apostrophe (how spreadsheets and our CSV export guard a +) is ignored."""
    try:
        return numbers.normalise_number(number.strip().lstrip("'"), phone_list.default_country)
    except numbers.InvalidNumber as exc:
        raise errors.InvalidParameter(str(exc))


def keyword_of(text: str) -> str:
    """SUBSCRIBE, UNSUBSCRIBE or "" for the text of an incoming SMS."""
    return KEYWORDS.get(text.strip().upper(), "")


# --- One number ---------------------------------------------------------------------------


def subscribe(*, phone_list: PhoneList, number: str, source: str) -> Change:
    """Puts the number on the list (again, after DEL). `changed` is False when it already
    was on; concurrent calls for one number change it once. Raises InvalidParameter."""
    e164 = normalise(phone_list=phone_list, number=number)
    now = timezone.now()
    try:
        with transaction.atomic():
            Subscriber.objects.create(phone_list=phone_list, number=e164, source=source, subscribed_at=now)
        return Change(e164, True)
    except IntegrityError:
        pass  # known number: back on only if it had left; another caller may have done it first
    rejoined = Subscriber.objects.filter(phone_list=phone_list, number=e164, unsubscribed_at__isnull=False).update(
        unsubscribed_at=None, subscribed_at=now, source=source
    )
    return Change(e164, bool(rejoined))


def unsubscribe(*, phone_list: PhoneList, number: str) -> Change:
    """Takes the number off the list, however it joined. `changed` is False when it was
    not on it. Raises InvalidParameter for a text that is not a number."""
    e164 = normalise(phone_list=phone_list, number=number)
    # One conditional UPDATE: of two concurrent DELs only one finds the row still subscribed.
    left = Subscriber.objects.filter(phone_list=phone_list, number=e164, unsubscribed_at__isnull=True).update(
        unsubscribed_at=timezone.now()
    )
    return Change(e164, bool(left))


# --- Many numbers -------------------------------------------------------------------------


def import_subscribers(*, phone_list: PhoneList, numbers: list[str], source: str) -> ImportResult:
    """Subscribes every valid number (new ones and those who had left); invalid entries
    are reported, not fatal. Raises InvalidParameter for more than MAX_IMPORT entries."""
    if len(numbers) > MAX_IMPORT:
        raise errors.InvalidParameter(f"At most {MAX_IMPORT} numbers per import; this one has {len(numbers)}.")
    result = ImportResult()
    seen: dict[str, None] = {}  # an ordered set: the first spelling of a number wins
    for position, text in enumerate(numbers, start=1):
        try:
            seen.setdefault(normalise(phone_list=phone_list, number=text))
        except errors.InvalidParameter as exc:
            result.errors.append((position, text, exc.message))
    wanted = list(seen)
    if not wanted:
        return result
    now = timezone.now()
    rows = Subscriber.objects.filter(phone_list=phone_list, number__in=wanted)
    with transaction.atomic():
        current = set(rows.filter(unsubscribed_at__isnull=True).values_list("number", flat=True))
        rows.filter(unsubscribed_at__isnull=False).update(unsubscribed_at=None, subscribed_at=now, source=source)
        Subscriber.objects.bulk_create(
            [Subscriber(phone_list=phone_list, number=n, source=source, subscribed_at=now) for n in wanted],
            ignore_conflicts=True,  # the ones already known were handled by the UPDATE
            batch_size=1000,
        )
    for e164 in wanted:
        (result.already if e164 in current else result.added).append(e164)
    return result


def current_subscribers(*, phone_list: PhoneList) -> list[str]:
    """The numbers subscribed now, oldest subscription first."""
    return list(
        Subscriber.objects.filter(phone_list=phone_list, unsubscribed_at__isnull=True)
        .order_by("subscribed_at", "pk")
        .values_list("number", flat=True)
    )


def export_subscribers_csv(*, phone_list: PhoneList, out: Writable, include_former: bool = True) -> int:
    """Writes `number,source,subscribed_at,unsubscribed_at` rows (the panel's export format)
    to `out`; returns how many. Numbers starting with + get a leading apostrophe so a
    spreadsheet does not read them as a formula; `import_subscribers` ignores it."""
    writer = csv.writer(out)
    writer.writerow(["number", "source", "subscribed_at", "unsubscribed_at"])
    rows = Subscriber.objects.filter(phone_list=phone_list)
    if not include_former:
        rows = rows.filter(unsubscribed_at__isnull=True)
    count = 0
    for row in rows.order_by("subscribed_at", "pk").iterator():
        number = f"'{row.number}" if row.number[:1] in ("=", "+", "-", "@") else row.number
        left = row.unsubscribed_at.isoformat() if row.unsubscribed_at else ""
        writer.writerow([number, row.source, row.subscribed_at.isoformat(), left])
        count += 1
    return count


def update_reply_settings(
    *, phone_list: PhoneList, confirm_subscriptions: bool, subscribe_reply: str, unsubscribe_reply: str
) -> PhoneList:
    """Switches the confirmation replies on or off and sets their texts; raises InvalidParameter."""
    subscribe_reply, unsubscribe_reply = subscribe_reply.strip(), unsubscribe_reply.strip()
    if max(len(subscribe_reply), len(unsubscribe_reply)) > MAX_REPLY_LENGTH:
        raise errors.InvalidParameter(f"A reply may be at most {MAX_REPLY_LENGTH} characters.")
    if confirm_subscriptions and not (subscribe_reply or unsubscribe_reply):
        raise errors.InvalidParameter("Write at least one reply text to switch replies on.")
    phone_list.confirm_subscriptions = confirm_subscriptions
    phone_list.subscribe_reply, phone_list.unsubscribe_reply = subscribe_reply, unsubscribe_reply
    phone_list.save(update_fields=["confirm_subscriptions", "subscribe_reply", "unsubscribe_reply"])
    return phone_list


# --- Sending --------------------------------------------------------------------------------


def account_sender(*, account_id: int) -> AuthenticatedKey:
    """The sender of messages Phonefleet queues for the account itself (panel broadcasts,
    confirmation replies): no API key, so the message's `api_key` stays empty."""
    # AuthenticatedKey.id is typed int; the accept path only copies it into the nullable FK.
    return AuthenticatedKey(None, account_id, "Phonefleet", (), (), None, None)  # type: ignore[arg-type]


def broadcast(*, key: AuthenticatedKey, phone_list: PhoneList, text: str, ref: str = "") -> accept.BulkResult:
    """Queues `text` to every current subscriber through the bulk path: one batch, credit
    for all or nothing. Raises MissingMsg, MissingTo (no subscribers), InvalidParameter
    (more than 10,000), InsufficientCredit or SpendingCapReached."""
    if not text or not text.strip():
        raise errors.MissingMsg()
    recipients = current_subscribers(phone_list=phone_list)
    if not recipients:
        raise errors.MissingTo("The list has no subscribers to broadcast to.")
    rows = [accept.BulkRow(to=number, ref=ref) for number in recipients]
    return accept.accept_bulk(key=key, list_token=phone_list.token, device_id=None, rows=rows, text=text)


def _queue_reply(*, phone_list: PhoneList, keyword: str, to: str) -> tuple[accept.NewMessage | None, str]:
    text = phone_list.subscribe_reply if keyword == SUBSCRIBE else phone_list.unsubscribe_reply
    if not text.strip():
        return None, "no reply text"
    try:
        accepted = accept.accept_message(
            key=account_sender(account_id=phone_list.account_id),
            list_token=phone_list.token,
            device_id=None,
            to=to,
            text=text,
            ref=REPLY_REFS[keyword],
        )
    except errors.DomainError as exc:
        # Usually no credit: the subscription stands, the reply is simply not sent.
        logger.warning("No %s reply to %s on list %s: %s", keyword, to, phone_list.token, exc.message)
        return None, exc.message
    return accepted.message, ""


def handle_keyword(*, inbound: InboundSms) -> KeywordResult | None:
    """Applies an OK/DEL SMS to its list and queues the list's confirmation reply when
    replies are on and the subscription really changed. None for other texts or senders
    that are not phone numbers. Call once per stored SMS (see `record_incoming_sms`)."""
    keyword = keyword_of(inbound.text)
    if not keyword:
        return None
    phone_list = PhoneList.objects.get(pk=inbound.phone_list_id)
    try:
        if keyword == SUBSCRIBE:
            change = subscribe(phone_list=phone_list, number=inbound.sender, source=Subscriber.Source.SMS)
        else:
            change = unsubscribe(phone_list=phone_list, number=inbound.sender)
    except errors.InvalidParameter:
        return None  # an alphanumeric sender or short code cannot subscribe
    if not (change.changed and phone_list.confirm_subscriptions):
        return KeywordResult(keyword, change)
    reply, skipped = _queue_reply(phone_list=phone_list, keyword=keyword, to=change.number)
    return KeywordResult(keyword, change, reply, skipped)

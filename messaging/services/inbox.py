"""SMS that the phones of a list receive."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.lib import tokens
from devices.models import Device
from messaging.models import InboundSms
from messaging.services import callbacks, subscriptions

INBOUND_ID_PREFIX = "sms"


def inbound_fingerprint(*, phone_list_id: int, sender: str, text: str, received_at: datetime) -> str:
    """Same sender, text and minute on one list = the same SMS, however many phones (or
    reconnects) report it. The minute absorbs small clock differences between phones."""
    minute = received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    raw = "\x1f".join([str(phone_list_id), sender.strip(), text, minute])
    return hashlib.sha256(raw.encode()).hexdigest()


def record_incoming_sms(
    *, device: Device, sender: str, text: str, received_at: datetime, sim: int | None = None
) -> InboundSms:
    """Stores an SMS a phone received, once per list, with its `sms.received` IPN event in
    the same transaction; an OK/DEL text changes the list's subscribers in it too. Returns
    the stored row (the earlier one for a repeat)."""
    received_at = min(received_at, timezone.now())
    fingerprint = inbound_fingerprint(
        phone_list_id=device.phone_list_id, sender=sender, text=text, received_at=received_at
    )
    try:
        with transaction.atomic():
            inbound = InboundSms.objects.create(
                account_id=device.account_id,
                phone_list_id=device.phone_list_id,
                device=device,
                public_id=tokens.public_id(INBOUND_ID_PREFIX),
                sender=sender[:32],
                text=text,
                sim=sim,
                received_at=received_at,
                fingerprint=fingerprint,
                keyword=subscriptions.keyword_of(text),
            )
            callbacks.record_inbound_event(inbound=inbound)
            # Only the report that stored the row gets here: the keyword is applied once per list.
            subscriptions.handle_keyword(inbound=inbound)
            return inbound
    except IntegrityError:
        # Another phone of the list (or this one, again) reported it first.
        return InboundSms.objects.get(phone_list_id=device.phone_list_id, fingerprint=fingerprint)

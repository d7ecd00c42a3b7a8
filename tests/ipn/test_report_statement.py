"""A `sent` or `delivered` report with standard IPN callbacks on is one statement on
PostgreSQL, whose outbox row (body built in SQL) is exactly the row the Python builder
(`callbacks.build_message_event`) makes for the message as the report left it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.models import Device
from ipn.lib import signing
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Message
from messaging.services import callbacks, dispatch
from tests import factories

pytestmark = pytest.mark.usefixtures("postgres_only")

# Any character a database text column can hold (no lone surrogates, no NUL).
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=120)
# Phone clocks: microseconds that the body's milliseconds cut (never round), any offset.
TIMES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.sampled_from([UTC, None])
)


def _python_row(event: IpnEvent, endpoint: IpnEndpoint, status: str) -> IpnEvent:
    """What the Python builder makes for the message as it is now."""
    assert event.message_id is not None
    message = Message.objects.select_related("device").get(pk=event.message_id)
    built = callbacks.build_message_event(
        message=message, status=status, occurred_at=event.occurred_at, endpoint=endpoint
    )
    assert built is not None
    return built


def _same_row(stored: IpnEvent, built: IpnEvent, secret: str) -> None:
    assert stored.body == built.body
    fields = ("account_id", "type", "message_id", "content_type", "status", "attempts", "replays", "locked_until")
    assert {f: getattr(stored, f) for f in fields} == {f: getattr(built, f) for f in fields}
    assert stored.smsgate_webhook_id is None and stored.delivered_at is None
    assert stored.next_attempt_at == stored.created_at == stored.schedule_started_at
    # The signature covers the body: the same bytes, the same signature.
    signed = [
        signing.sign(secret=secret, webhook_id="evt_x", timestamp=1, body=row.body.encode()) for row in (stored, built)
    ]
    assert signed[0] == signed[1]


def _report(device: Device, message: Message, status: str, at: datetime | None = None) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.report_message(device=device, message_id=message.public_id, status=status, at=at) is not None
    assert len(queries) == 1, [q["sql"][:80] for q in queries]  # the one statement, nothing else


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=TEXT.map(lambda s: s[:255]), name=TEXT.map(lambda s: s[:100] or "x"), error=TEXT, sent=TIMES, late=TIMES)
def test_the_statement_writes_the_python_builders_row(alice_list, endpoint, ref, name, error, sent, late):
    device, _ = factories.make_enrolled_device(phone_list=alice_list, name=name)
    message = factories.make_message(phone_list=alice_list)
    Message.objects.filter(pk=message.pk).update(ref=ref)
    assert dispatch.claim_message(device=device, message_id=message.public_id)
    at = sent.replace(tzinfo=UTC) if sent.tzinfo is None else sent
    _report(device, message, "sent", at=at)
    stored = IpnEvent.objects.get(message=message)
    _same_row(stored, _python_row(stored, endpoint, "sent"), endpoint.secret)
    # An error text left on the message (the body carries it) and a phone's time in the past.
    Message.objects.filter(pk=message.pk).update(error=error[:500])
    _report(device, message, "delivered", at=late.replace(tzinfo=UTC) if late.tzinfo is None else late)
    delivered = IpnEvent.objects.get(message=message, type="message.delivered")
    _same_row(delivered, _python_row(delivered, endpoint, "delivered"), endpoint.secret)
    assert delivered.pk > stored.pk  # in the order they happened


def test_the_settings_decide_the_row(alice, alice_list, endpoint):
    device, _ = factories.make_enrolled_device(phone_list=alice_list)

    def sent_and_delivered() -> list[tuple[str, str]]:
        message = factories.make_message(phone_list=alice_list)
        assert dispatch.claim_message(device=device, message_id=message.public_id)
        _report(device, message, "sent")
        _report(device, message, "delivered")
        assert Message.objects.get(pk=message.pk).status == "delivered"
        return list(IpnEvent.objects.filter(message=message).order_by("id").values_list("type", "status"))

    assert sent_and_delivered() == [("message.sent", "pending"), ("message.delivered", "pending")]
    IpnEndpoint.objects.filter(pk=endpoint.pk).update(events=["message.delivered"])
    assert sent_and_delivered() == [("message.delivered", "pending")]
    IpnEndpoint.objects.filter(pk=endpoint.pk).update(disabled_at=timezone.now())
    assert sent_and_delivered() == [("message.delivered", "skipped")]  # kept for "replay failed since"
    IpnEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_at=None)
    assert sent_and_delivered() == []


def test_geniosms_callbacks_take_the_general_path(alice, alice_list, endpoint):
    IpnEndpoint.objects.filter(pk=endpoint.pk).update(format=IpnEndpoint.Format.GENIOSMS)
    device, _ = factories.make_enrolled_device(phone_list=alice_list)
    message = factories.make_message(phone_list=alice_list)
    assert dispatch.claim_message(device=device, message_id=message.public_id)
    dispatch.report_message(device=device, message_id=message.public_id, status="sent")
    event = IpnEvent.objects.get(message=message)
    assert event.content_type == "application/x-www-form-urlencoded" and "ipn_type=SENT" in event.body
    # The process remembers: the next report of this account goes straight to the general path.
    assert dispatch._needs_general_path(alice.pk)


def test_a_report_that_is_not_one_step_writes_nothing_in_the_statement(alice_list, endpoint):
    device, _ = factories.make_enrolled_device(phone_list=alice_list)
    message = factories.make_message(phone_list=alice_list)
    assert dispatch.claim_message(device=device, message_id=message.public_id)
    # `delivered` with no `sent`: the general path records `sent` first, with its callback.
    dispatch.report_message(device=device, message_id=message.public_id, status="delivered")
    assert list(IpnEvent.objects.filter(message=message).order_by("id").values_list("type", flat=True)) == [
        "message.sent",
        "message.delivered",
    ]
    # A duplicate writes no second event.
    dispatch.report_message(device=device, message_id=message.public_id, status="delivered")
    assert IpnEvent.objects.filter(message=message).count() == 2
    delivered_at = Message.objects.get(pk=message.pk).delivered_at
    assert delivered_at is not None and delivered_at <= timezone.now() + timedelta(seconds=1)

"""The wire details that break the SMSGate app when wrong (dates, signatures, versions, SSE frames)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

from devices.smsgate import wire


def test_it_writes_dates_with_exactly_three_fractional_digits_and_an_offset():
    at = datetime(2024, 5, 13, 9, 49, 17, 357891, tzinfo=UTC)
    assert wire.format_datetime(at) == "2024-05-13T09:49:17.357+00:00"
    assert wire.format_datetime(at.replace(microsecond=0)) == "2024-05-13T09:49:17.000+00:00"
    plus_seven = at.astimezone(timezone(timedelta(hours=7)))
    assert wire.format_datetime(plus_seven) == "2024-05-13T09:49:17.357+00:00"


def test_it_reads_the_phones_dates_in_its_own_offset():
    expected = datetime(2024, 5, 13, 9, 49, 17, 357000, tzinfo=UTC)
    assert wire.parse_datetime("2024-05-13T16:49:17.357+07:00") == expected
    assert wire.parse_datetime("2024-05-13T09:49:17.357Z") == expected
    assert wire.parse_datetime("2024-05-13T09:49:17") == expected.replace(microsecond=0)
    assert wire.parse_datetime("yesterday") is None
    assert wire.parse_datetime(None) is None


def test_it_reads_the_app_version_from_the_user_agent():
    assert wire.app_version("me.capcom.smsgateway/1.67.0") == (1, 67, 0)
    assert wire.app_version("me.capcom.smsgateway/1.53.2 (extra)") == (1, 53, 2)
    assert wire.app_version("curl/8.0") == ()
    assert wire.app_version_string("me.capcom.smsgateway/1.68.0") == "1.68.0"


def test_the_signature_is_hex_hmac_sha256_of_body_then_timestamp():
    body, stamp = b'{"event":"sms:received"}', "1715593757"
    expected = hmac.new(b"k3y", body + stamp.encode(), hashlib.sha256).hexdigest()
    assert wire.webhook_signature("k3y", body, stamp) == expected
    assert wire.verify_webhook_signature(key="k3y", body=body, timestamp=stamp, signature=expected, now=1715593757)


def test_it_refuses_tampered_stale_or_unsigned_webhooks():
    body, stamp = b'{"a":1}', "1715593757"
    good = wire.webhook_signature("k3y", body, stamp)
    assert not wire.verify_webhook_signature(
        key="k3y", body=b'{"a":2}', timestamp=stamp, signature=good, now=1715593757
    )
    assert not wire.verify_webhook_signature(
        key="k3y", body=body, timestamp=stamp, signature=good, now=1715593757 + 301
    )
    assert not wire.verify_webhook_signature(
        key="k3y", body=body, timestamp=stamp, signature=good, now=1715593757 - 301
    )
    assert wire.verify_webhook_signature(key="k3y", body=body, timestamp=stamp, signature=good, now=1715593757 + 299)
    assert not wire.verify_webhook_signature(key="", body=body, timestamp=stamp, signature=good, now=1715593757)
    assert not wire.verify_webhook_signature(key="k3y", body=body, timestamp="soon", signature=good, now=1715593757)


def test_every_sse_event_has_a_non_empty_data_line():
    assert wire.sse_event("MessageEnqueued") == b"event: MessageEnqueued\ndata: {}\n\n"
    assert wire.sse_event("SettingsUpdated", "") == b"event: SettingsUpdated\ndata: {}\n\n"
    assert wire.sse_comment("keepalive") == b": keepalive\n\n"

"""A verification code never reaches the database or the logs in clear: after a whole life
(start, restart, the SMS claimed and delivered, callbacks in both formats, wrong and right
checks, reads), a dump of the database and every log line, SQL with its parameters
included, are searched for each code and each real SMS text."""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess

import pytest
import time_machine
from django.db import connection
from django.test import Client

from ipn.models import IpnEndpoint
from messaging.models import Message
from messaging.services import dispatch, verify
from tests.messaging.verifying import ITALIAN, check, code_sent, phone_of, start

pytestmark = pytest.mark.django_db(transaction=True)

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
# No word before the code that the log filter's credential patterns would hide it behind.
TEMPLATE = "Shop login: {code} (valid 10 minutes)"


def database_dump() -> str:
    """Every row of the test database as text: pg_dump on PostgreSQL, iterdump on SQLite."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return "\n".join(connection.connection.iterdump())
    db = connection.settings_dict
    host, port, user = db["HOST"] or "127.0.0.1", str(db["PORT"] or 5432), db["USER"] or "postgres"
    result = subprocess.run(
        ["pg_dump", "--data-only", "-h", host, "-p", port, "-U", user, db["NAME"]],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PGPASSWORD": db.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def every_log_line(caplog):
    """Everything logged at DEBUG and up, with each SQL statement and its parameters."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def test_no_code_is_stored_or_logged_in_clear(alice, alice_key, alice_list, every_log_line):
    _key, secret = alice_key
    client = Client()
    endpoint = IpnEndpoint.objects.create(
        account=alice, url="https://alice.example/ipn", enabled=True, secret="whsec_eA=="
    )
    texts = []

    def remember_text(started: dict) -> None:
        message = Message.objects.get(public_id=started["message_id"])
        texts.append(verify.text_for_phone(message_id=message.public_id, sealed_text=message.sealed_text))

    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        first = start(client, secret, template=TEMPLATE, length=10)
        remember_text(first)
        traveller.shift(dt.timedelta(seconds=31))
        second = start(client, secret, template=TEMPLATE, length=10, ref="restart")  # replaces the first
        remember_text(second)
        codes = [re.findall(r"\d{10}", text)[0] for text in texts]
        assert code_sent(second["verification_id"]) == codes[1]
        endpoint.format = "geniosms"  # the SMS's callbacks in the form that carries its text
        endpoint.save(update_fields=["format"])
        phone = phone_of(alice_list)
        dispatch.report_message(device=phone, message_id=second["message_id"], status="sent")
        dispatch.report_message(device=phone, message_id=second["message_id"], status="delivered")
        endpoint.format = "standard"  # and the verification's own callback
        endpoint.save(update_fields=["format"])
        check(client, secret, to=ITALIAN, code=codes[0])  # the replaced code: refused
        check(client, secret, verification_id=second["verification_id"], code="0" * 10)
        assert check(client, secret, verification_id=second["verification_id"], code=codes[1])["status"] == "approved"
        client.get(f"/api/v1/verify/{second['verification_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
        client.get(f"/api/v1/messages/{second['message_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert all(len(code) == 10 and code.isdigit() for code in codes), codes
    dump = database_dump()
    logs = every_log_line.text
    # The dump and the logs are the real thing: they hold these verifications and their SMS.
    assert second["verification_id"] in dump and "Shop login: ********** (valid" in dump
    assert "msg=Shop+login%3A+%2A%2A%2A" in dump  # the SMS's GenioSms callbacks carry its (masked) text
    assert '"type":"verify.approved"' in dump
    assert "UPDATE" in logs and second["verification_id"] in logs
    for secret_text in [*codes, *texts]:
        assert secret_text not in dump
        assert secret_text not in logs

"""SMSGate's official Python client (`android-sms-gateway` from PyPI, unmodified) against a
live server: send to two numbers, read the state back as an SMSGate phone reports it,
cancel, list. (The full official-client suite, Python and JavaScript: tests/smsgate_clients/.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from android_sms_gateway import client, domain, errors
from android_sms_gateway.enums import ProcessState
from django.conf import settings

from devices.smsgate import services as smsgate_devices
from tests.live import LiveServer
from tests.smsgate.phone import SmsGateApp, phone_time

pytestmark = pytest.mark.slow

TWO = ["+393331111111", "+393332222222"]


@pytest.fixture(scope="module")
def live(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(
        tmp_path_factory.mktemp("daphne"), API_KEY_SECRET=settings.API_KEY_SECRET, EMBEDDED_WORKER="false"
    ) as server:
        yield server


@pytest.fixture
def phone(live, transactional_db, alice_list) -> Iterator[SmsGateApp]:
    """An SMSGate phone signed up in Alice's list."""
    _row, secret = smsgate_devices.create_enrolment_token(phone_list=alice_list)
    app = SmsGateApp(f"{live.url}/api/mobile/v1")
    assert app.sign_up(secret).status_code == 201
    yield app
    app.close()


def test_send_get_and_cancel_with_the_official_client(live, phone, alice_key):
    _key, secret = alice_key
    with client.APIClient(None, secret, base_url=f"{live.url}/3rdparty/v1") as api:
        sent = api.send(domain.Message(phone_numbers=TWO, text_message=domain.TextMessage(text="Hello"), id="py-1"))
        assert (sent.id, sent.state) == ("py-1", ProcessState.Pending)
        assert [r.phone_number for r in sent.recipients] == TWO

        jobs = phone.fetch()  # the phone takes both recipients' messages
        assert sorted(job["phoneNumbers"][0] for job in jobs) == TWO
        assert api.get_state("py-1").state == ProcessState.Processed
        first, second = sorted(jobs, key=lambda job: job["phoneNumbers"][0])
        assert phone.report(first, "Sent", {"Processed": phone_time(), "Sent": phone_time()}) == 204
        assert phone.report(second, "Failed", {"Failed": phone_time()}, error="RESULT_ERROR_NO_SERVICE") == 204
        state = api.get_state("py-1")
        assert state.state == ProcessState.Sent
        assert [(r.state, r.error) for r in state.recipients] == [
            (ProcessState.Sent, None),
            (ProcessState.Failed, "RESULT_ERROR_NO_SERVICE"),
        ]
        assert state.device_id == phone.device_id

        api.send(domain.Message(phone_numbers=TWO[:1], text_message=domain.TextMessage(text="Later"), id="py-2"))
        api.cancel_message("py-2")
        assert api.get_state("py-2").state == ProcessState.Cancelled
        with pytest.raises(errors.APIError) as refused:
            api.cancel_message("py-1")  # its recipients are with the phone already
        assert refused.value.status_code == 409

        listed = api.get_messages(pagination=domain.QueryPagination(limit=10))
        assert [m.id for m in listed] == ["py-2", "py-1"]
        assert [d.id for d in api.list_devices()] == [phone.device_id]
        assert api.health_check().status.value in ("pass", "warn")

    with client.APIClient("NOBODY", "wrong-password", base_url=f"{live.url}/api/3rdparty/v1") as stranger:
        with pytest.raises(errors.UnauthorizedError):
            stranger.get_state("py-1")

"""The official SMSGate Python client (PyPI `android-sms-gateway`, pinned in
requirements-dev.txt, unmodified) against a live Phonefleet: only the base URL and the
credential (a Phonefleet API key as its bare token) differ from an SMSGate user's code."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from android_sms_gateway import client as asg_client
from android_sms_gateway import domain, enums, errors

from tests import factories
from tests.ipn.conftest import receiver  # noqa: F401 - fixture
from tests.live import wait_for
from tests.smsgate_clients.conftest import RECIPIENTS, live_smsgate  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The key the user's receivers already verify with (the app's Settings → Webhooks).
SIGNING_KEY = "kept-from-the-app"


def verify_as_smsgate_documents(key: str, body: bytes, timestamp: str, signature: str) -> bool:
    """The Python check from SMSGate's webhook docs: the client library has no helper."""
    expected = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def test_the_python_client_sends_tracks_cancels_and_hears_webhooks(live_smsgate, receiver, alice):  # noqa: F811
    base_url = f"{live_smsgate.url}/3rdparty/v1"
    with asg_client.APIClient(None, live_smsgate.api_key, base_url=base_url) as api:
        assert api.health_check().status == enums.HealthStatus.PASS

        api.patch_settings(domain.DeviceSettings(webhooks=domain.SettingsWebhooks(signing_key=SIGNING_KEY)))
        assert api.get_settings().webhooks.signing_key == SIGNING_KEY
        hooks = [
            api.create_webhook(domain.Webhook(id=None, url=receiver.url, event=event))
            for event in (enums.WebhookEvent.SMS_SENT, enums.WebhookEvent.SMS_DELIVERED)
        ]
        assert {hook.id for hook in api.get_webhooks()} == {hook.id for hook in hooks}
        with pytest.raises(errors.BadRequestError) as refused:
            api.create_webhook(domain.Webhook(id=None, url=receiver.url, event=enums.WebhookEvent.MMS_RECEIVED))
        assert "`mms:received` is not supported" in refused.value.response["message"]

        sent = api.send(domain.Message(phone_numbers=RECIPIENTS, text_message=domain.TextMessage(text="Hello")))
        assert sent.state == enums.ProcessState.Pending
        assert sorted(r.phone_number for r in sent.recipients) == RECIPIENTS

        # The state as the phones report it: sent, then delivered, per recipient.
        final = wait_for(
            lambda: (state := api.get_state(sent.id)).state == enums.ProcessState.Delivered and state,
            timeout=20,
            what="both recipients delivered",
        )
        assert [r.state for r in final.recipients] == [enums.ProcessState.Delivered] * 2
        assert sent.id in [message.id for message in api.get_messages()]
        assert {device.id for device in api.list_devices()} == set(live_smsgate.phones)

        # One webhook per recipient per event, each signed as SMSGate signs.
        got = receiver.wait_for(4, timeout=20)
        for request in got:
            assert verify_as_smsgate_documents(
                SIGNING_KEY, request.body, request.headers["x-timestamp"], request.headers["x-signature"]
            )
        bodies = [json.loads(request.body) for request in got]
        assert sorted((b["event"], b["payload"]["phoneNumber"]) for b in bodies) == sorted(
            (event, to) for event in ("sms:delivered", "sms:sent") for to in RECIPIENTS
        )
        assert {b["payload"]["messageId"] for b in bodies} == {sent.id}
        assert {b["deviceId"] for b in bodies} <= set(live_smsgate.phones)
        assert {b["webhookId"] for b in bodies} == {hook.id for hook in hooks}

        for hook in hooks:
            api.delete_webhook(hook.id)
        assert api.get_webhooks() == []

    # A message no phone can take yet (a list with no phones) can be cancelled.
    idle_list = factories.make_list(account=alice, name="No phones")
    _key, idle_key = factories.make_api_key(account=alice, default_list=idle_list)
    with asg_client.APIClient(None, idle_key, base_url=base_url) as api:
        waiting = api.send(domain.Message(phone_numbers=RECIPIENTS[:1], text_message=domain.TextMessage(text="Later")))
        api.cancel_message(waiting.id)
        assert api.get_state(waiting.id).state == enums.ProcessState.Cancelled

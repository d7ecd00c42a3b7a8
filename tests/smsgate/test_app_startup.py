"""A new SMSGate phone's start-up, replayed in the order the app's source runs it.

capcom6/android-sms-gateway v1.68.0, `GatewayService.start()`: the 24-hourly settings and
webhooks workers are queued at the same moment as the sign-up. Both find no registration
yet (`registrationInfo` is null) and finish "successfully" without a request; the sign-up
(`POST /device`) then emits `DeviceRegisteredEvent`, which opens the event stream (no
push token: `SSEForegroundService`), whose connect pulls messages. After that the app
fetches settings or webhooks only when an event says so, or a day later. The phone must
still end up with its signing key and its webhooks at once.
"""

from __future__ import annotations

import time

import pytest

from devices.models import Device
from messaging.models import InboundSms
from tests.smsgate.phone import EventStream, SmsGateApp, phone_time

pytestmark = pytest.mark.slow


class StartingApp(SmsGateApp):
    """The app's workers, each doing what its source does when it runs."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.hooks: list[dict[str, str]] = []
        self.requests: list[str] = []

    def settings_worker(self) -> None:
        # SettingsUpdateWorker → GatewayService.getSettings(): null without registration.
        if not self.token:
            return
        self.requests.append("GET /settings")
        self.sync_settings()

    def webhooks_worker(self) -> None:
        # WebhooksUpdateWorker → GatewayService.getWebHooks(): empty without registration.
        if not self.token:
            return
        self.requests.append("GET /webhooks")
        self.hooks = self.webhooks()

    def pull_worker(self) -> None:
        if not self.token:
            return
        self.requests.append("GET /message")
        self.fetch()

    def start(self, private_token: str) -> EventStream:
        """`GatewayService.start()` and what its events set off, up to the open stream."""
        self.pull_worker()
        self.webhooks_worker()
        self.settings_worker()
        self.requests.append("POST /device")
        assert self.sign_up(private_token).status_code == 201
        stream = EventStream(self)  # DeviceRegisteredEvent, no push token: SSE
        assert stream.response.status_code == 200
        self.pull_worker()  # SSEForegroundService's onConnected
        return stream

    def handle(self, stream: EventStream) -> None:
        """Runs the worker of each event read so far (EventsReceiver), once each."""
        for name, _data in stream.events[self.handled :]:
            {"SettingsUpdated": self.settings_worker, "WebhooksUpdated": self.webhooks_worker}.get(
                name, self.pull_worker
            )()
        self.handled = len(stream.events)

    handled = 0


def test_a_new_phone_has_its_signing_key_and_webhooks_as_soon_as_its_stream_opens(server, mobile_token, alice_list):
    app = StartingApp(server.mobile)
    stream = app.start(mobile_token)
    try:
        # The start-up itself fetched nothing: both workers ran before the registration.
        assert (app.signing_key, app.hooks) == ("", [])
        assert app.requests == ["POST /device", "GET /message"]
        stream.read_until(lambda s: {"SettingsUpdated", "WebhooksUpdated"} <= {name for name, _ in s.events})
        app.handle(stream)
    finally:
        stream.close()

    device = Device.objects.get(public_id=app.device_id)
    assert app.signing_key == device.webhook_signing_key != ""
    assert {hook["event"] for hook in app.hooks} >= {"sms:received", "sms:sent", "sms:delivered", "sms:failed"}
    assert {hook["url"] for hook in app.hooks} == {f"{server.mobile}/hooks/{app.device_id}"}
    # So the first SMS the phone receives, signed with that key, reaches the list's inbox.
    received = {"messageId": "c0ffee", "message": "OK", "sender": "+393339876543", "receivedAt": phone_time()}
    hook = next(hook["url"] for hook in app.hooks if hook["event"] == "sms:received")
    assert app.post_webhook(hook, "sms:received", received, timestamp=int(time.time())).status_code == 200
    assert InboundSms.objects.filter(phone_list=alice_list, sender="+393339876543", text="OK").exists()
    app.close()

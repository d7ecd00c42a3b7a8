"""Whatever Unicode a customer or a phone sends, the bytes signed are the bytes sent."""

import json
from itertools import count

from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipn import delivery
from ipn.models import IpnEvent
from messaging.models import Message
from messaging.services import dispatch, inbox
from tests import factories

# Any character a database text column can hold (no lone surrogates, no NUL).
_senders = count(1)
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=TEXT.map(lambda s: s[:255]), msg=TEXT, name=TEXT.map(lambda s: s[:100]))
def test_every_body_received_verifies_and_parses_back_to_the_stored_event(
    alice_list, endpoint, receiver, ref, msg, name
):
    device, _ = factories.make_enrolled_device(phone_list=alice_list, name=name or "x")
    message = factories.make_message(phone_list=alice_list, text=msg or "x")
    Message.objects.filter(pk=message.pk).update(ref=ref)
    dispatch.claim_message(device=device, message_id=message.public_id)
    dispatch.report_message(device=device, message_id=message.public_id, status="sent")
    inbox.record_incoming_sms(device=device, sender=f"+39{next(_senders)}", text=msg, received_at=timezone.now())
    before = len(receiver.requests)
    while delivery.deliver_one_due_event():
        pass
    events = {e.webhook_id: e for e in IpnEvent.objects.filter(status=IpnEvent.Status.DELIVERED)}
    for got in receiver.wait_for(before + 2)[before:]:
        assert got.verified, (got.standardwebhooks_error, got.svix_error)
        stored = events[got.headers["webhook-id"]]
        assert got.body == stored.body.encode()
        assert json.loads(got.body) == json.loads(stored.body)
    sent_body = json.loads(IpnEvent.objects.filter(type="message.sent").latest("id").body)
    assert sent_body["data"]["ref"] == ref and sent_body["data"]["device_name"] == device.name

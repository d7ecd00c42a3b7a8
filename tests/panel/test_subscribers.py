"""The list page's subscriber forms: add, remove, broadcast, confirmation replies."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account
from devices.models import PhoneList, Subscriber
from messaging.models import Message
from messaging.services import subscriptions

ANNA, BRUNO = "+393331110001", "+393331110002"


@pytest.fixture
def urls(alice_list):
    token = alice_list.token

    class Urls:
        page = reverse("list", args=[token])
        add = reverse("list-subscribers-add", args=[token])
        remove = reverse("list-subscriber-remove", args=[token])
        broadcast = reverse("list-broadcast", args=[token])
        replies = reverse("list-subscription-replies", args=[token])

    return Urls


def test_the_list_page_has_the_subscriber_forms(alice_client, urls, alice_list):
    subscriptions.subscribe(phone_list=alice_list, number=ANNA, source="sms")
    page = alice_client.get(urls.page).content.decode()
    for action in (urls.add, urls.remove, urls.broadcast, urls.replies):
        assert f'action="{action}"' in page
    assert f'name="number" value="{ANNA}"' in page


def test_it_adds_pasted_numbers_and_reports_bad_lines(alice_client, urls, alice_list):
    response = alice_client.post(urls.add, {"numbers": f"333 111 0001\n{BRUNO}, nope"}, follow=True)
    assert set(Subscriber.objects.filter(phone_list=alice_list).values_list("number", "source")) == {
        (ANNA, "panel"),
        (BRUNO, "panel"),
    }
    page = response.content.decode()
    assert "Added 2" in page and "Line 3 (nope)" in page


def test_it_removes_a_subscriber(alice_client, urls, alice_list):
    subscriptions.subscribe(phone_list=alice_list, number=ANNA, source="sms")
    alice_client.post(urls.remove, {"number": ANNA})
    assert not Subscriber.objects.get(number=ANNA).is_subscribed
    page = alice_client.get(urls.page).content.decode()
    assert "Subscribers (0)" in page


def test_a_broadcast_from_the_panel_queues_one_message_per_subscriber(alice_client, urls, alice, alice_list):
    subscriptions.import_subscribers(phone_list=alice_list, numbers=[ANNA, BRUNO], source="sms")
    response = alice_client.post(urls.broadcast, {"msg": "Doors open at 20:00"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("messages"))
    sent = Message.objects.filter(phone_list=alice_list)
    assert sorted(sent.values_list("to", flat=True)) == [ANNA, BRUNO]
    assert len(set(sent.values_list("batch_id", flat=True))) == 1
    assert set(sent.values_list("api_key", flat=True)) == {None}
    assert Account.objects.get(pk=alice.pk).balance == 98


def test_a_panel_broadcast_without_enough_credit_queues_nothing_and_says_why(alice_client, urls, alice, alice_list):
    subscriptions.import_subscribers(phone_list=alice_list, numbers=[ANNA, BRUNO], source="sms")
    Account.objects.filter(pk=alice.pk).update(balance=1)
    response = alice_client.post(urls.broadcast, {"msg": "Hi"}, follow=True)
    assert "Not enough credit" in response.content.decode()
    assert not Message.objects.exists()


def test_it_switches_confirmation_replies_on_with_their_texts(alice_client, urls, alice_list):
    alice_client.post(urls.replies, {"confirm_subscriptions": "on", "subscribe_reply": "Hi!", "unsubscribe_reply": ""})
    saved = PhoneList.objects.get(pk=alice_list.pk)
    assert (saved.confirm_subscriptions, saved.subscribe_reply, saved.unsubscribe_reply) == (True, "Hi!", "")
    alice_client.post(urls.replies, {"subscribe_reply": "Hi!", "unsubscribe_reply": "Bye"})
    assert not PhoneList.objects.get(pk=alice_list.pk).confirm_subscriptions


def test_bob_cannot_touch_alices_subscribers(bob_client, urls, alice, alice_list):
    subscriptions.subscribe(phone_list=alice_list, number=ANNA, source="sms")
    for url, data in (
        (urls.add, {"numbers": BRUNO}),
        (urls.remove, {"number": ANNA}),
        (urls.broadcast, {"msg": "pwned"}),
        (urls.replies, {"confirm_subscriptions": "on", "subscribe_reply": "pwned"}),
    ):
        assert bob_client.post(url, data).status_code == 404
    assert list(Subscriber.objects.values_list("number", "unsubscribed_at")) == [(ANNA, None)]
    assert not Message.objects.exists() and not PhoneList.objects.get(pk=alice_list.pk).confirm_subscriptions


def test_the_forms_only_accept_post(alice_client, urls):
    for url in (urls.add, urls.remove, urls.broadcast, urls.replies):
        assert alice_client.get(url).status_code == 405

"""Sending from the panel: the dashboard's and the messages page's form go through the API's
accept path (checks, credit, ledger, offer), preview parts and cost with its segment code,
put refusals beside their field, and warn when no phone can take the message."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.models import Account, LedgerEntry
from messaging.lib import segments
from messaging.models import Message
from tests import factories


def field_errors(html: str, field: str) -> list[str]:
    """The error sentences rendered right after the field's input."""
    match = re.search(rf'id="id_{field}".*?(?=<label|<div class="send-preview"|</form>)', html, re.S)
    assert match, f"no {field} field"
    return re.findall(r'<div class="field-error">(.*?)</div>', match.group(0), re.S)


@pytest.mark.parametrize("page", ["dashboard", "messages"])
def test_it_sends_from_the_page_through_the_accept_path_and_opens_the_message(
    page, alice, alice_list, alice_client, django_capture_on_commit_callbacks
):
    factories.make_device(phone_list=alice_list, name="Alice's Pixel", online=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse(page),
            {"target": f"list:{alice_list.token}", "to": "3331234567", "msg": "x" * 161, "ref": "order-42"},
        )
    message = Message.objects.get(account=alice)
    assert response.status_code == 302
    assert response.url == reverse("message", args=[message.public_id])
    assert (message.to, message.parts, message.cost, message.ref) == ("+393331234567", 2, 2, "order-42")
    assert message.phone_list == alice_list and message.api_key is None
    alice.refresh_from_db()
    assert alice.balance == 98
    assert LedgerEntry.objects.get(message=message).amount == -2
    page_html = alice_client.get(response.url).content.decode()
    assert "Accepted: 2 SMS parts, 2 credits." in page_html
    assert 'id="nobody-online"' not in page_html  # Alice's Pixel is online


def test_it_pins_a_message_to_one_chosen_phone(alice, alice_list, alice_client):
    phone = factories.make_device(phone_list=alice_list, name="Pinned", online=True)
    response = alice_client.post(
        reverse("dashboard"), {"target": f"device:{phone.public_id}", "to": "+393331234567", "msg": "Hi"}
    )
    assert response.status_code == 302
    assert Message.objects.get(account=alice).pinned_device == phone


def test_a_bad_number_is_refused_beside_the_number_and_nothing_is_taken(alice, alice_list, alice_client):
    response = alice_client.post(
        reverse("dashboard"), {"target": f"list:{alice_list.token}", "to": "12", "msg": "Hello"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert field_errors(html, "to") == ["&#x27;12&#x27; has the wrong length for a phone number of its country."]
    assert field_errors(html, "msg") == []
    assert 'value="12"' in html and "Hello</textarea>" in html  # what was typed stays
    assert not Message.objects.exists()
    alice.refresh_from_db()
    assert alice.balance == 100


def test_a_text_of_more_than_ten_parts_is_refused_beside_the_text(alice_list, alice_client):
    response = alice_client.post(
        reverse("messages"), {"target": f"list:{alice_list.token}", "to": "+393331234567", "msg": "x" * 1531}
    )
    html = response.content.decode()
    assert field_errors(html, "msg") == ["<code>msg</code> needs 11 SMS parts; at most 10 are allowed in one message."]
    assert '<details class="card" id="send" open>' in html  # the messages page opens the form to show it


def test_empty_fields_are_asked_for_in_plain_words(alice_list, alice_client):
    html = alice_client.post(reverse("dashboard"), {"target": f"list:{alice_list.token}"}).content.decode()
    assert field_errors(html, "to") == ["Type the number to send to."]
    assert field_errors(html, "msg") == ["Type the text of the message."]


def test_not_enough_credit_is_a_sentence_on_the_form_and_nothing_is_stored(alice, alice_list, alice_client):
    alice.balance = 1
    alice.save(update_fields=["balance"])
    response = alice_client.post(
        reverse("dashboard"), {"target": f"list:{alice_list.token}", "to": "+393331234567", "msg": "x" * 200}
    )
    assert "Not enough credit for all parts of this message." in response.content.decode()
    assert not Message.objects.exists()


def test_another_accounts_list_or_phone_cannot_be_chosen(alice, alice_list, alice_client, bob_list):
    bobs_phone = factories.make_device(phone_list=bob_list, online=True)
    for target in (f"list:{bob_list.token}", f"device:{bobs_phone.public_id}"):
        response = alice_client.post(reverse("dashboard"), {"target": target, "to": "+393331234567", "msg": "Hi"})
        assert field_errors(response.content.decode(), "target") == ["Choose one of your lists or phones."]
    assert not Message.objects.exists()


def test_a_form_with_no_list_yet_says_what_to_do_first(alice, alice_client):
    html = alice_client.get(reverse("dashboard")).content.decode()
    assert 'id="send-form"' not in html
    assert "Create a" in html and "join a phone to it first" in html


def preview(client, **fields):
    return client.post(reverse("send-preview"), fields).content.decode()


@pytest.mark.parametrize(
    "text",
    ["", "x" * 160, "x" * 161, "€" * 80, "€" * 81, "ñ" * 160, "é" + "x" * 69, "ç" + "x" * 70, "😀" * 35, "😀" * 36],
)
def test_the_preview_counts_parts_and_cost_with_the_accept_paths_segment_code(alice, alice_list, alice_client, text):
    alice.price_per_part = 3
    alice.save(update_fields=["price_per_part"])
    html = preview(alice_client, target=f"list:{alice_list.token}", msg=text)
    parts = segments.count_segments(text).parts
    assert f'data-parts="{parts}" data-cost="{parts * 3}"' in html
    assert ("Unicode characters" in html) == (segments.count_segments(text).encoding == segments.UCS2)


def test_the_preview_says_when_a_text_is_too_long_or_credit_too_low(alice, alice_list, alice_client):
    assert "11 SMS parts: at most 10 are allowed" in preview(alice_client, msg="x" * 1531)
    assert "you have" not in preview(alice_client, msg="x" * 153 * 10)  # 10 parts at a price of 1: affordable
    alice.balance = 5
    alice.save(update_fields=["balance"])
    assert "you have 5" in preview(alice_client, msg="x" * 153 * 6)
    Account.objects.filter(pk=alice.pk).update(debt=2)
    assert "the account owes 2 credits: nothing is sent until a top-up repays it" in preview(alice_client, msg="x")


def test_the_preview_warns_when_no_phone_of_the_target_is_online(alice_list, alice_client):
    offline = factories.make_device(phone_list=alice_list, name="Sleeping")
    html = preview(alice_client, target=f"list:{alice_list.token}", msg="Hi")
    assert 'id="send-offline"' in html and "No phone of the list “Alice&#x27;s phones” is online now" in html
    html = preview(alice_client, target=f"device:{offline.public_id}", msg="Hi")
    assert "“Sleeping” is not online now" in html
    factories.make_device(phone_list=alice_list, name="Awake", online=True)
    html = preview(alice_client, target=f"list:{alice_list.token}", msg="Hi")
    assert 'id="send-offline"' not in html and "Offered to 1 online phone: Awake." in html


def test_the_preview_shows_nothing_of_another_accounts_target(alice_client, bob_list):
    factories.make_device(phone_list=bob_list, name="Bob's secret phone", online=True)
    html = preview(alice_client, target=f"list:{bob_list.token}", msg="Hi")
    assert "Bob" not in html


def test_the_form_shows_the_warning_before_anything_is_typed(alice_list, alice_client):
    html = alice_client.get(reverse("dashboard")).content.decode()
    assert 'id="send-offline"' in html


def test_a_queued_message_says_while_no_phone_can_take_it(alice_list, alice_client):
    message = factories.make_message(phone_list=alice_list)
    live = reverse("message-live", args=[message.public_id])
    assert 'id="nobody-online"' in alice_client.get(live).content.decode()
    factories.make_device(phone_list=alice_list, online=True)
    assert 'id="nobody-online"' not in alice_client.get(live).content.decode()


def test_a_message_pinned_to_an_offline_phone_says_so_though_the_list_has_others(alice_list, alice_client):
    factories.make_device(phone_list=alice_list, name="Other", online=True)
    pinned = factories.make_device(phone_list=alice_list, name="Pinned")
    message = factories.make_message(pinned_device=pinned)
    html = alice_client.get(reverse("message-live", args=[message.public_id])).content.decode()
    assert 'id="nobody-online"' in html


def test_the_header_credit_badge_has_a_live_fragment(alice, alice_client):
    assert alice_client.get(reverse("credit-live")).content.decode().strip() == "100 credits"
    factories.make_message(phone_list=factories.make_list(account=alice), cost=7)
    assert alice_client.get(reverse("credit-live")).content.decode().strip() == "93 credits"
    assert 'data-live="/live/credit/"' in alice_client.get(reverse("dashboard")).content.decode()

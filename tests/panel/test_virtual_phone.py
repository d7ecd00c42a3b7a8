"""The virtual phone's own endpoints: a test SMS pinned to it (the accept path, its credit),
what became of the messages it was offered, leaving (its phone is removed, not left
behind), and whether a saved phone may still connect."""

from __future__ import annotations

import phonenumbers
from django.urls import reverse

from devices.models import Device
from messaging.models import Message
from tests import factories


def join(client, phone_list, name="Browser") -> dict:
    answer = client.post(reverse("virtual-phone-join"), {"pin": phone_list.pin, "name": name})
    assert answer.status_code == 200
    return answer.json()


def test_a_test_sms_is_pinned_to_the_phone_and_paid_like_any_send(alice, alice_list, alice_client):
    phone = join(alice_client, alice_list)
    answer = alice_client.post(reverse("virtual-phone-test"), {"device_id": phone["device_id"]}).json()
    message = Message.objects.get(public_id=answer["message_id"])
    assert message.pinned_device == Device.objects.get(public_id=phone["device_id"])
    assert phonenumbers.region_code_for_number(phonenumbers.parse(message.to)) == "IT"  # the list's country
    assert (answer["url"], answer["cost"]) == (reverse("message", args=[message.public_id]), 1)
    alice.refresh_from_db()
    assert alice.balance == 99


def test_a_test_sms_without_credit_is_refused_with_a_sentence(alice, alice_list, alice_client):
    phone = join(alice_client, alice_list)
    alice.balance = 0
    alice.save(update_fields=["balance"])
    answer = alice_client.post(reverse("virtual-phone-test"), {"device_id": phone["device_id"]})
    assert answer.status_code == 400
    assert answer.json()["error"] == "Not enough credit for all parts of this message."
    assert not Message.objects.exists()


def test_a_test_sms_to_another_accounts_phone_is_refused(alice_client, bob_list):
    bobs = factories.make_device(phone_list=bob_list, online=True)
    answer = alice_client.post(reverse("virtual-phone-test"), {"device_id": bobs.public_id})
    assert answer.status_code == 400
    assert not Message.objects.exists()


def test_offers_say_which_phone_took_each_message(alice_list, alice_client, bob_list):
    other = factories.make_device(phone_list=alice_list, name="Other phone")
    taken = factories.make_message(phone_list=alice_list, status=Message.Status.ASSIGNED, device=other)
    open_one = factories.make_message(phone_list=alice_list)
    bobs = factories.make_message(phone_list=bob_list)
    ids = ",".join([taken.public_id, open_one.public_id, bobs.public_id])
    found = alice_client.get(reverse("virtual-phone-offers"), {"ids": ids}).json()["messages"]
    assert found == {
        taken.public_id: {"status": "assigned", "device_id": other.public_id, "device_name": "Other phone"},
        open_one.public_id: {"status": "queued", "device_id": "", "device_name": ""},
    }


def test_leaving_removes_the_browsers_phone_and_only_a_virtual_one(alice_list, alice_client):
    phone = join(alice_client, alice_list)
    real = factories.make_device(phone_list=alice_list, name="Real phone")
    assert alice_client.post(reverse("virtual-phone-leave"), {"device_id": real.public_id}).json() == {"removed": False}
    assert alice_client.post(reverse("virtual-phone-leave"), {"device_id": phone["device_id"]}).json() == {
        "removed": True
    }
    assert Device.objects.get(public_id=phone["device_id"]).removed_at is not None
    assert Device.objects.get(pk=real.pk).removed_at is None


def test_another_account_cannot_remove_or_inspect_the_phone(alice_list, alice_client, bob_client):
    phone = join(alice_client, alice_list)
    assert bob_client.post(reverse("virtual-phone-leave"), {"device_id": phone["device_id"]}).json() == {
        "removed": False
    }
    assert bob_client.get(reverse("virtual-phone-status"), {"device_id": phone["device_id"]}).json() == {
        "state": "gone"
    }
    assert Device.objects.get(public_id=phone["device_id"]).removed_at is None


def test_the_status_of_a_saved_phone_follows_the_panel(alice_list, alice_client):
    phone = join(alice_client, alice_list)
    device = Device.objects.get(public_id=phone["device_id"])

    def state() -> str:
        return alice_client.get(reverse("virtual-phone-status"), {"device_id": phone["device_id"]}).json()["state"]

    assert state() == "enabled"
    alice_client.post(reverse("phone-disable", args=[device.public_id]))
    assert state() == "disabled"
    alice_client.post(reverse("phone-remove", args=[device.public_id]))
    assert state() == "gone"


def test_the_page_offers_the_first_list_pin_and_automatic_is_on(alice_list, alice_client):
    html = alice_client.get(reverse("virtual-phone")).content.decode()
    assert f'value="{alice_list.pin}"' in html
    assert '<input type="checkbox" id="auto" checked>' in html

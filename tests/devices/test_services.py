"""Managing lists and phones: settings, rename, disable, enable, remove."""

from __future__ import annotations

import pytest

from accounts import errors
from accounts.models import Account
from devices import services
from devices.models import Device, PhoneList
from tests import factories


@pytest.fixture
def phone(alice_list):
    return factories.make_enrolled_device(phone_list=alice_list, name="Old name")


def test_it_updates_only_the_given_list_settings(alice_list):
    services.update_list_settings(phone_list=alice_list, rate_limit_per_minute=6, lease_seconds=300)
    stored = PhoneList.objects.get(pk=alice_list.pk)
    assert (stored.rate_limit_per_minute, stored.lease_seconds, stored.default_country) == (6, 300, "IT")
    assert stored.phone_settings() == {"rate_limit_per_minute": 6, "lease_seconds": 300, "default_country": "IT"}
    services.update_list_settings(phone_list=alice_list, rate_limit_per_minute=None, default_country="de")
    stored.refresh_from_db()
    assert (stored.rate_limit_per_minute, stored.lease_seconds, stored.default_country) == (None, 300, "DE")


@pytest.mark.parametrize(
    "change",
    [
        {"lease_seconds": 1},
        {"lease_seconds": 10**6},
        {"rate_limit_per_minute": 0},
        {"default_country": "Italy"},
        {"name": "  "},
        {"default_ttl_seconds": 5},
    ],
)
def test_it_refuses_out_of_range_list_settings(alice_list, change):
    with pytest.raises(errors.InvalidParameter):
        services.update_list_settings(phone_list=alice_list, **change)
    assert PhoneList.objects.get(pk=alice_list.pk).lease_seconds == 120


def test_it_renames_a_phone(phone):
    device, _ = phone
    services.rename_device(device=device, name="  Kitchen phone ")
    assert Device.objects.get(pk=device.pk).name == "Kitchen phone"
    with pytest.raises(errors.InvalidParameter):
        services.rename_device(device=device, name="")


def test_a_disabled_phone_token_stops_working_until_it_is_enabled_again(phone):
    device, token = phone
    services.disable_device(device=device)
    assert services.authenticate_device(token=token) is None
    services.enable_device(device=device)
    assert services.authenticate_device(token=token) == device


def test_a_removed_phone_stays_removed(phone):
    device, token = phone
    services.remove_device(device=device)
    services.enable_device(device=device)
    assert services.authenticate_device(token=token) is None
    assert Device.objects.get(pk=device.pk).removed_at is not None


def test_a_malformed_token_is_refused_without_a_query(phone, django_assert_num_queries):
    _device, token = phone
    with django_assert_num_queries(0):
        assert services.authenticate_device(token=token[:-1] + ("x" if token[-1] != "x" else "y")) is None
        assert services.authenticate_device(token="pf_live_notadevice") is None
        assert services.authenticate_device(token=None) is None


def test_a_token_check_is_one_statement_and_reads_the_phone_and_its_list_as_the_orm_does(
    phone, django_assert_num_queries
):
    device, token = phone
    Device.objects.filter(pk=device.pk).update(sims=[{"slot": 0, "carrier": "Iliad"}], battery=40)
    stored = Device.objects.select_related("phone_list").get(pk=device.pk)
    with django_assert_num_queries(1):  # the phone and its list, and nothing loaded later
        found = services.authenticate_device(token=token)
        assert found is not None
        fields = [f.attname for f in Device._meta.concrete_fields]
        assert [getattr(found, name) for name in fields] == [getattr(stored, name) for name in fields]
        list_fields = [f.attname for f in stored.phone_list._meta.concrete_fields]
        assert [getattr(found.phone_list, n) for n in list_fields] == [
            getattr(stored.phone_list, n) for n in list_fields
        ]
        assert found.sims == [{"slot": 0, "carrier": "Iliad"}] and found.created_at.tzinfo is not None
    found.name = "renamed"
    found.save(update_fields=["name"])  # an ordinary model instance
    assert Device.objects.get(pk=device.pk).name == "renamed"


def test_a_token_of_an_inactive_account_is_refused(phone):
    device, token = phone
    Account.objects.filter(pk=device.account_id).update(is_active=False)
    assert services.authenticate_device(token=token) is None


def test_marking_a_phone_connected_returns_the_connection_it_replaces(phone):
    device, _ = phone
    assert services.mark_connected(device_id=device.pk, channel_name="first") == ""
    assert services.mark_connected(device_id=device.pk, channel_name="second") == "first"
    stored = Device.objects.get(pk=device.pk)
    assert stored.is_connected and stored.channel_name == "second" and stored.connected_at == stored.last_seen_at
    assert services.mark_connected(device_id=-1, channel_name="nobody") == ""


def test_a_disconnect_of_a_replaced_connection_keeps_the_phone_online(phone):
    device, _ = phone
    services.mark_connected(device_id=device.pk, channel_name="old")
    assert services.mark_connected(device_id=device.pk, channel_name="new") == "old"
    services.mark_disconnected(device_id=device.pk, channel_name="old")
    assert Device.objects.get(pk=device.pk).is_connected
    services.mark_disconnected(device_id=device.pk, channel_name="new")
    assert not Device.objects.get(pk=device.pk).is_connected


def test_the_phones_that_claim_offers_are_counted_per_list_across_processes(alice_list, bob_list):
    for name in ("on", "also on"):
        factories.make_device(phone_list=alice_list, name=name, online=True)
    factories.make_device(phone_list=alice_list, name="off", online=False)
    busy = factories.make_device(phone_list=alice_list, name="busy", online=True)
    fetching = factories.make_device(phone_list=alice_list, name="SMSGate", online=True)
    Device.objects.filter(pk=busy.pk).update(is_available=False)
    Device.objects.filter(pk=fetching.pk).update(kind=Device.Kind.SMSGATE)
    factories.make_device(phone_list=bob_list, online=True)
    assert services.available_phone_counts({alice_list.pk, bob_list.pk}) == {alice_list.pk: 2, bob_list.pk: 1}


def test_the_fleets_hand_written_statements_agree_with_the_orm(alice_list, bob_list):
    """The pass's statements (devices/services.py) are written by hand for speed: each gives
    what the ORM's own definition gives, over phones in every state that matters."""
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import PRESENCE_TTL

    phones = {name: factories.make_device(phone_list=alice_list, name=name, online=True) for name in "abcdefgh"}
    phones["i"] = factories.make_device(phone_list=bob_list, name="i", online=True)
    phones["j"] = factories.make_device(phone_list=bob_list, name="j", online=False)
    stale = timezone.now() - PRESENCE_TTL - timedelta(seconds=1)
    Device.objects.filter(pk=phones["a"].pk).update(is_enabled=False)
    Device.objects.filter(pk=phones["b"].pk).update(removed_at=timezone.now())
    Device.objects.filter(pk=phones["c"].pk).update(last_seen_at=stale)
    Device.objects.filter(pk=phones["d"].pk).update(is_connected=False)
    Device.objects.filter(pk=phones["e"].pk).update(is_available=False, rate_limit_per_hour=7)
    Device.objects.filter(pk=phones["f"].pk).update(kind=Device.Kind.SMSGATE, rate_limit_per_minute=2)
    other = factories.make_account(email="carol@example.com")
    carol_list = factories.make_list(account=other, name="Carol")
    phones["k"] = factories.make_device(phone_list=carol_list, name="k", online=True)
    Account.objects.filter(pk=other.pk).update(is_active=False)
    ids = {device.pk for device in phones.values()} | {10**9}
    lists = {alice_list.pk, bob_list.pk, carol_list.pk, 10**9}

    expected_caps = {
        pk: tuple(caps)
        for pk, *caps in Device.objects.filter(pk__in=ids, is_enabled=True, removed_at__isnull=True)
        .filter(account__is_active=True)
        .values_list("pk", "rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day")
    }
    assert services.enabled_device_caps(ids) == expected_caps
    assert expected_caps[phones["e"].pk] == (None, 7, None) and phones["k"].pk not in expected_caps
    assert services.enabled_device_caps(set()) == {}

    online = Device.objects.online().filter(phone_list_id__in=lists, is_available=True)
    expected_counts: dict[int, int] = {}
    for list_id in online.exclude(kind=Device.Kind.SMSGATE).values_list("phone_list_id", flat=True):
        expected_counts[list_id] = expected_counts.get(list_id, 0) + 1
    assert (
        services.available_phone_counts(lists)
        == expected_counts
        == {alice_list.pk: 2, bob_list.pk: 1, carol_list.pk: 1}
    )

    rows = services.phone_list_rows(lists)
    assert rows == {
        row[0]: row for row in PhoneList.objects.filter(pk__in=lists).values_list(*services.PHONE_LIST_COLUMNS)
    }
    assert set(rows) == {alice_list.pk, bob_list.pk, carol_list.pk}

    Device.objects.filter(pk=phones["g"].pk).update(channel_name="g.1", is_connected=False, last_seen_at=stale)
    Device.objects.filter(pk=phones["h"].pk).update(channel_name="h.2", is_connected=False, last_seen_at=stale)
    services.touch_devices([(phones["g"].pk, "g.1"), (phones["h"].pk, "h.1")])  # h has a newer connection
    services.touch_devices([])
    touched = Device.objects.online().filter(pk__in=[phones["g"].pk, phones["h"].pk])
    assert dict(touched.values_list("pk", "channel_name")) == {phones["g"].pk: "g.1"}

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts import errors, services
from accounts.lib import ipnet


def key_with(rules):
    return services.AuthenticatedKey(1, 1, "k", tuple(ipnet.normalise_networks(rules)), (), None, None)


def test_an_empty_allow_list_means_any_ip_with_code_2():
    assert services.check_ip(key=key_with([]), ip="203.0.113.9") == 2


def test_a_matching_address_gets_code_1():
    assert services.check_ip(key=key_with(["203.0.113.0/24"]), ip="203.0.113.9") == 1
    assert services.check_ip(key=key_with(["2001:db8::/32"]), ip="2001:db8::1") == 1


def test_an_address_off_the_list_is_refused():
    with pytest.raises(errors.IpNotAllowed):
        services.check_ip(key=key_with(["203.0.113.0/24"]), ip="198.51.100.1")


def test_ipv4_mapped_ipv6_matches_the_ipv4_rule():
    assert services.check_ip(key=key_with(["192.0.2.7/32"]), ip="::ffff:192.0.2.7") == 1
    assert services.check_ip(key=key_with(["::ffff:192.0.2.0/120"]), ip="192.0.2.9") == 1


def test_invalid_cidrs_are_refused():
    for bad in ["10.0.0.0/33", "example.com", "1.2.3"]:
        with pytest.raises(ValueError):
            ipnet.parse_network(bad)


@given(
    network=st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False))
    ),
    address=st.ip_addresses(v=4),
)
def test_allowed_equals_membership_for_ipv4(network, address):
    assert ipnet.address_allowed(str(address), [str(network)]) == (address in network)


@given(
    network=st.ip_addresses(v=6).flatmap(
        lambda a: st.integers(0, 128).map(lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False))
    ),
    address=st.ip_addresses(v=6),
)
def test_allowed_equals_membership_for_ipv6(network, address):
    expected = address in network
    mapped = address.ipv4_mapped
    if mapped is not None or (network.prefixlen >= 96 and network.network_address.ipv4_mapped is not None):
        return  # mapped forms are compared as IPv4: covered by the explicit test above
    assert ipnet.address_allowed(str(address), [str(network)]) == expected


# Client IP behind proxies.


def test_without_trusted_proxies_a_forged_forwarded_for_is_ignored():
    assert ipnet.client_ip("198.51.100.1", "203.0.113.9", 0, []) == "198.51.100.1"


def test_with_one_trusted_proxy_the_right_most_entry_is_the_client():
    assert ipnet.client_ip("10.0.0.2", "203.0.113.9", 1, []) == "203.0.113.9"


def test_an_attacker_prefix_before_the_real_client_is_ignored():
    assert ipnet.client_ip("10.0.0.2", "6.6.6.6, 203.0.113.9", 1, []) == "203.0.113.9"


def test_trusted_networks_are_walked_from_the_right():
    assert ipnet.client_ip("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.5", 0, ["10.0.0.0/8"]) == "203.0.113.9"


def test_a_peer_outside_the_trusted_networks_is_the_client():
    assert ipnet.client_ip("198.51.100.1", "203.0.113.9", 0, ["10.0.0.0/8"]) == "198.51.100.1"


def test_garbage_in_forwarded_for_falls_back_to_the_socket():
    assert ipnet.client_ip("10.0.0.2", "not-an-ip", 1, []) == "10.0.0.2"


def test_the_api_refuses_a_forged_header_from_a_direct_client(client, alice, alice_list):
    _key, secret = services.create_api_key(account=alice, name="A", allowed_ips=["203.0.113.9"])
    response = client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403
    assert response.json()["status_code"] == "4"


def test_the_api_trusts_the_configured_proxy(client, settings, alice):
    settings.TRUSTED_PROXY_COUNT = 1
    _key, secret = services.create_api_key(account=alice, name="A", allowed_ips=["203.0.113.9"])
    response = client.get(
        "/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9"
    )
    assert response.status_code == 200
    assert response.json()["status_code"] == "1"

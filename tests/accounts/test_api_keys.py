import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import errors, services
from accounts.lib import tokens
from accounts.models import ApiKey
from tests import factories


def test_a_key_is_shown_once_and_only_its_digest_is_stored(alice):
    key, secret = services.create_api_key(account=alice, name="OTP service")
    assert secret.startswith("pf_live_")
    assert len(secret) == len("pf_live_") + 36
    row = ApiKey.objects.values().get(pk=key.pk)
    assert secret not in str(row)
    assert row["prefix"] == secret[:12]
    assert row["digest"] == tokens.token_digest(secret, settings.API_KEY_SECRET)


def test_no_key_string_appears_anywhere_in_the_database(alice):
    _key, secret = services.create_api_key(account=alice, name="A")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        dump = repr(cursor.fetchall())
    assert secret not in dump
    assert secret[12:] not in dump


def test_it_authenticates_a_good_key(alice):
    key, secret = services.create_api_key(account=alice, name="A")
    found = services.authenticate_api_key(secret=secret)
    assert (found.id, found.account_id) == (key.pk, alice.pk)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_checksum_typo_is_refused_without_a_query(alice):
    _key, secret = services.create_api_key(account=alice, name="A")
    typo = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with CaptureQueriesContext(connection) as queries, pytest.raises(errors.InvalidApiKey):
        services.authenticate_api_key(secret=typo)
    assert len(queries) == 0


def test_a_well_formed_unknown_key_is_refused(db):
    with pytest.raises(errors.InvalidApiKey):
        services.authenticate_api_key(secret=tokens.generate_token("pf_live"))


@pytest.mark.parametrize("secret", [None, "", "nonsense", "pf_live_short"])
def test_missing_or_malformed_keys_are_refused(db, secret):
    with pytest.raises(errors.InvalidApiKey):
        services.authenticate_api_key(secret=secret)


def test_revocation_takes_effect_at_once_even_when_cached(alice):
    key, secret = services.create_api_key(account=alice, name="A")
    services.authenticate_api_key(secret=secret)  # now cached
    services.revoke_api_key(key=key)
    with pytest.raises(errors.InvalidApiKey):
        services.authenticate_api_key(secret=secret)


def test_a_cached_key_needs_no_query(alice):
    _key, secret = services.create_api_key(account=alice, name="A")
    services.authenticate_api_key(secret=secret)
    with CaptureQueriesContext(connection) as queries:
        services.authenticate_api_key(secret=secret)
    assert len(queries) == 0


def test_a_default_list_of_another_account_is_refused(alice, bob):
    bobs = factories.make_list(account=bob)
    with pytest.raises(errors.TargetNotFound):
        services.create_api_key(account=alice, name="A", default_list=bobs)


def test_bad_ip_rules_and_origins_are_refused_at_save(alice):
    with pytest.raises(errors.InvalidParameter, match=r"10\.0\.0\.300"):
        services.create_api_key(account=alice, name="A", allowed_ips=["10.0.0.300"])
    with pytest.raises(errors.InvalidParameter):
        services.create_api_key(account=alice, name="A", cors_origins=["https://shop.example/path"])


def test_balance_endpoint_answers_in_the_envelope(client, alice_key):
    _key, secret = alice_key
    response = client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response.json() == {"response": "200", "status_code": "2", "balance": 100, "debt": 0, "price_per_part": 1}


def test_balance_endpoint_refuses_a_wrong_key_with_code_3(client, db):
    response = client.get("/api/v1/balance?api_key=pf_live_wrong")
    assert response.status_code == 401
    body = response.json()
    assert (body["response"], body["status_code"]) == ("401", "3")
    assert body["error"]

import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix.webhooks

from ipn.lib import signing

# The known-answer vector of the standardwebhooks library's own tests (test_sign_function).
KNOWN_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KNOWN_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KNOWN_TIMESTAMP = 1614265330
KNOWN_BODY = b'{"test": 2432232314}'
KNOWN_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_it_reproduces_the_standardwebhooks_known_answer():
    signature = signing.sign(secret=KNOWN_SECRET, webhook_id=KNOWN_ID, timestamp=KNOWN_TIMESTAMP, body=KNOWN_BODY)
    assert signature == KNOWN_SIGNATURE
    reference = standardwebhooks.Webhook(KNOWN_SECRET).sign(
        KNOWN_ID, datetime.fromtimestamp(KNOWN_TIMESTAMP, tz=UTC), KNOWN_BODY.decode()
    )
    assert reference == KNOWN_SIGNATURE


def test_a_new_secret_is_whsec_and_32_random_bytes():
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def _headers(secret, body=b'{"a":1}', webhook_id="evt_abc", timestamp=None):
    timestamp = timestamp or int(datetime.now(tz=UTC).timestamp())
    return signing.webhook_headers(secrets=[secret], webhook_id=webhook_id, timestamp=timestamp, body=body)


@pytest.mark.parametrize("verifier", [standardwebhooks.Webhook, svix.webhooks.Webhook])
def test_both_reference_verifiers_accept_our_headers(verifier):
    secret = signing.generate_secret()
    verifier(secret).verify(b'{"a":1}', _headers(secret))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body + b" ", headers),
        lambda body, headers: (body, {**headers, "webhook-id": headers["webhook-id"] + "x"}),
        lambda body, headers: (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
        lambda body, headers: (body.replace(b"1", b"2"), headers),
    ],
    ids=["body-extended", "id", "timestamp", "body-byte"],
)
def test_one_changed_byte_of_body_id_or_timestamp_fails_verification(tamper):
    secret = signing.generate_secret()
    body, headers = tamper(b'{"a":1}', _headers(secret))
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(secret).verify(body, headers)


def test_a_stale_timestamp_fails_verification():
    secret = signing.generate_secret()
    old = int(datetime.now(tz=UTC).timestamp()) - 6 * 60
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(b'{"a":1}', _headers(secret, timestamp=old))


def test_two_secrets_give_two_space_separated_signatures_each_verifying():
    old, new = signing.generate_secret(), signing.generate_secret()
    now = int(datetime.now(tz=UTC).timestamp())
    headers = signing.webhook_headers(secrets=[new, old], webhook_id="evt_1", timestamp=now, body=b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(b"{}", headers)


def test_a_webhook_id_with_a_dot_is_refused():
    with pytest.raises(ValueError):
        signing.webhook_headers(secrets=[signing.generate_secret()], webhook_id="evt.1", timestamp=1, body=b"")

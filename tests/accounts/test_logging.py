"""The log filter's redaction of credentials and verification codes."""

from __future__ import annotations

import sys

from accounts.logging import RedactSecretsFilter, redact


def test_a_verification_code_in_a_query_string_is_redacted_but_status_codes_stay():
    line = '"POST /api/v1/verify/check?verification_id=ver_x&code=482913&status_code=2 HTTP/1.1" 200'
    assert (
        redact(line) == '"POST /api/v1/verify/check?verification_id=ver_x&code=[redacted]&status_code=2 HTTP/1.1" 200'
    )


def test_an_api_key_in_a_query_string_is_redacted():
    assert redact("GET /api/v1/send?api_key=pf_live_abcdefgh123&to=1") == "GET /api/v1/send?api_key=[redacted]&to=1"


def test_credentials_in_a_url_are_redacted_plain_and_percent_encoded():
    assert redact("IPN to https://shop:s3cret@hooks.example.com/ipn failed") == (
        "IPN to https://[redacted]@hooks.example.com/ipn failed"
    )
    line = '"PUT /api/v1/ipn?url=https%3A%2F%2Fshop%3As3cret%40hooks.example.com%2Fipn&enabled=1 HTTP/1.1" 200'
    assert (
        redact(line)
        == '"PUT /api/v1/ipn?url=https%3A%2F%2F[redacted]%40hooks.example.com%2Fipn&enabled=1 HTTP/1.1" 200'
    )
    # An address without credentials, and an email address, are left alone.
    assert redact("https://hooks.example.com/ipn?to=a@b.example") == "https://hooks.example.com/ipn?to=a@b.example"


def test_a_logged_traceback_is_redacted_too():
    import logging

    try:
        raise ValueError("cannot reach https://shop:s3cret@hooks.example.com/ipn")
    except ValueError:
        record = logging.LogRecord("ipn", logging.ERROR, __file__, 1, "delivery failed", None, sys.exc_info())
    RedactSecretsFilter().filter(record)
    written = logging.Formatter().format(record)
    assert "s3cret" not in written
    assert "https://[redacted]@hooks.example.com/ipn" in written

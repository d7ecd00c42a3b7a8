"""The log filter's redaction of credentials and verification codes."""

from __future__ import annotations

from accounts.logging import redact


def test_a_verification_code_in_a_query_string_is_redacted_but_status_codes_stay():
    line = '"POST /api/v1/verify/check?verification_id=ver_x&code=482913&status_code=2 HTTP/1.1" 200'
    assert (
        redact(line) == '"POST /api/v1/verify/check?verification_id=ver_x&code=[redacted]&status_code=2 HTTP/1.1" 200'
    )


def test_an_api_key_in_a_query_string_is_redacted():
    assert redact("GET /api/v1/send?api_key=pf_live_abcdefgh123&to=1") == "GET /api/v1/send?api_key=[redacted]&to=1"

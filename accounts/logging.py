"""A logging filter that removes credentials from every log line."""

from __future__ import annotations

import logging
import re

# api_key=…, api=…, token=…, code=… in query strings; Bearer/Basic/Code headers; our token shapes.
_PATTERNS = [
    (re.compile(r"((?:api_key|api|token|key|secret|password|pin)=)[^&\s\"']+", re.IGNORECASE), r"\1[redacted]"),
    # A verification code sent in a query string (`status_code=` is left alone).
    (re.compile(r"(\bcode=)[^&\s\"']+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"((?:Bearer|Basic|Code)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"\b(pf_live|pfd|pfe)_[A-Za-z0-9]{8,}"), r"\1_[redacted]"),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_[redacted]"),
]


def redact(text: str) -> str:
    """The text with every credential we recognise replaced by [redacted]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True

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
    # Credentials in a URL (an IPN URL `https://user:pass@host/`), also percent-encoded in a
    # query string (`url=https%3A%2F%2Fuser%3Apass%40host`).
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@\"'<>]+@"), r"\1[redacted]@"),
    (
        re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*%3A%2F%2F)(?:(?!%2F)[^&\s@\"'<>/])+?%40", re.IGNORECASE),
        r"\1[redacted]%40",
    ),
]


def redact(text: str) -> str:
    """The text with every credential we recognise replaced by [redacted]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redacts the message, and the traceback of a logged exception (its text may quote a URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set: the redacted traceback is what gets written.
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()

"""Domain errors raised by services. They know nothing of HTTP: the API envelope
(`accounts/envelope.py`) maps each one to an API status code (docs/api.md) in a single table."""

from __future__ import annotations

from django.db import DataError


class DomainError(Exception):
    """Base class: the message is a human sentence safe to show the caller. `param` names
    the request parameter at fault, when one is (the panel shows the sentence beside its
    field); `details` are extra fields of the API's answer."""

    default_message = "The request could not be processed."
    default_param = ""

    def __init__(self, message: str | None = None, *, param: str = "", **details: object) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.param = param or self.default_param
        self.details = details


class InvalidApiKey(DomainError):
    default_message = "Missing or wrong API key."


class IpNotAllowed(DomainError):
    default_message = "This IP address is not on the API key's allow-list."


class TargetNotFound(DomainError):
    default_message = "Unknown list token or device id."


class MissingTo(DomainError):
    default_message = "The destination number `to` is missing."
    default_param = "to"


class MissingMsg(DomainError):
    default_message = "The message text `msg` is missing."
    default_param = "msg"


class InvalidParameter(DomainError):
    default_message = "A parameter is invalid."


class InsufficientCredit(DomainError):
    default_message = "Not enough credit for all parts of this message."


class SpendingCapReached(DomainError):
    default_message = "The account's daily spending cap would be exceeded."


class NotFound(DomainError):
    default_message = "Not found."


class Conflict(DomainError):
    default_message = "The request conflicts with the current state."


class IdempotencyInProgress(DomainError):
    default_message = "A request with this Idempotency-Key is still being processed."


class IdempotencyMismatch(DomainError):
    default_message = "This Idempotency-Key was already used with a different request."


class RateLimited(DomainError):
    default_message = "Too many requests; slow down."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BodyTooLarge(DomainError):
    """A request body over the size limit (`MAX_BODY_BYTES`, or the bulk upload's)."""

    default_message = "The request body is too large."


class WrongPin(DomainError):
    default_message = "Wrong PIN."


def input_error(exc: BaseException) -> str | None:
    """The sentence for an exception that unusable input raised past a view's checks, or
    None for any other exception (a bug, which stays a 500 and is logged as one).

    These come from the request, never from the server's own state: the database refusing
    a value (a NUL in text, a number or date beyond its column), nesting beyond Python's
    recursion limit, text that cannot be encoded (an unpaired surrogate), a number or date
    beyond Python's range."""
    if isinstance(exc, DataError):
        return "A value in the request cannot be stored (a NUL character, or a number or date out of range)."
    if isinstance(exc, RecursionError):
        return "The request is nested too deeply."
    if isinstance(exc, UnicodeError):
        return "The request holds text that is not valid Unicode (an unpaired surrogate)."
    if isinstance(exc, OverflowError):
        return "A number or date in the request is out of range."
    return None

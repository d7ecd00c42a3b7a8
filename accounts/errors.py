"""Domain errors raised by services. They know nothing of HTTP: the API envelope
(`accounts/envelope.py`) maps each one to an API status code (docs/api.md) in a single table."""

from __future__ import annotations


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

"""What every operation of the public messaging API shares: reading the call's
parameters, the success envelope, idempotent writes, page sizes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.response import Response

from accounts import errors
from accounts.api import ApiRequest, body_of
from accounts.envelope import envelope, error_response
from messaging.services import idempotency

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Parameters that carry the credential: never part of an idempotency fingerprint.
CREDENTIAL_PARAMS = ("api_key", "api")
# Errors that are the outcome of executing a request (stored for idempotent replay);
# every other error is a validation failure and frees the key.
EXECUTION_ERRORS = (errors.InsufficientCredit, errors.SpendingCapReached)


# --- Request helpers ---------------------------------------------------------------


def request_params(request: ApiRequest) -> dict[str, Any]:
    """The call's parameters: the query string, overlaid by a form or JSON body
    (GenioSms clients mix both), with the `custom` alias read as `ref`."""
    params: dict[str, Any] = dict(request.query_params.items())
    if request.method != "GET":
        try:
            data = body_of(request)
        except RequestDataTooBig:
            raise errors.InvalidParameter("The request body is larger than this server accepts.")
        if isinstance(data, QueryDict):
            params.update(data.items())
        elif isinstance(data, dict):
            params.update(data)
        else:
            raise errors.InvalidParameter("The body must be a JSON object or a form.")
    if _has_nul(params):
        # PostgreSQL text cannot hold NUL: refuse it here rather than fail in a query (500).
        raise errors.InvalidParameter("Parameters must not contain NUL characters.")
    if "ref" not in params and "custom" in params:
        params["ref"] = params.pop("custom")
    params.pop("custom", None)
    for name in CREDENTIAL_PARAMS:
        params.pop(name, None)
    return params


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def as_text(value: Any) -> str:
    """A parameter as a string ("" when absent); JSON numbers are accepted for numbers."""
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise errors.InvalidParameter("Parameters must be strings or numbers.")
    return str(value)


def drop_empty(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Form and query strings send empty optional fields as ""; treat them as absent."""
    return {k: v for k, v in params.items() if not (k in names and v in ("", None))}


def first_error(serializer: serializers.Serializer[Any]) -> str:
    return _first_of(serializer.errors)


def _first_of(errors_by_field: Any) -> str:
    field, messages = next(iter(errors_by_field.items()))
    text = messages[0] if isinstance(messages, list) else str(messages)
    return f"`{field}`: {text}"


# --- Serializers on the hot path --------------------------------------------------------


@functools.cache
def _bound(serializer_class: type[serializers.Serializer[Any]]) -> serializers.Serializer[Any]:
    """One instance per serializer class, with its fields built and bound once."""
    serializer = serializer_class()
    serializer.fields  # noqa: B018 (builds them)
    return serializer


def validate_with(serializer_class: type[serializers.Serializer[Any]], data: dict[str, Any]) -> dict[str, Any]:
    """`data` checked by the serializer; raises InvalidParameter naming the first bad field.

    DRF deep-copies every declared field for each new serializer instance, which cost the
    send API about a fifth of its time (bench/send.py); this validates with one shared
    instance instead. `run_validation` keeps no state on the instance, so this is safe
    across threads."""
    try:
        return dict(_bound(serializer_class).run_validation(data))
    except serializers.ValidationError as exc:
        raise errors.InvalidParameter(_first_of(exc.detail))


def represent_with(serializer_class: type[serializers.Serializer[Any]], instance: Any) -> dict[str, Any]:
    """`instance` as the serializer renders it, with the same shared instance as
    `validate_with` (`to_representation` keeps no state either)."""
    return dict(_bound(serializer_class).to_representation(instance))


class IdempotentMixin:
    """Runs a write once per `Idempotency-Key` and replays its stored answer."""

    idempotency_endpoint = ""

    def run_idempotent(self, request: ApiRequest, params: dict[str, Any], execute: Callable[[], Response]) -> Response:
        key = request.META.get("HTTP_IDEMPOTENCY_KEY")  # the Idempotency-Key header
        if key is None:
            return execute()
        api_key = request.auth
        found = idempotency.begin_request(
            api_key_id=api_key.id,  # type: ignore[union-attr]
            endpoint=self.idempotency_endpoint,
            key=key,
            fingerprint=idempotency.request_fingerprint(params),
        )
        if isinstance(found, idempotency.StoredAnswer):
            response = Response(found.body, status=found.status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            response = execute()
        except EXECUTION_ERRORS as exc:
            response = error_response(exc)
        except BaseException:
            idempotency.release_request(record=found)
            raise
        idempotency.finish_request(record=found, status=response.status_code, body=dict(response.data))
        return response


def ok(request: ApiRequest, data: dict[str, Any], status: int = 200) -> Response:
    """A success answer with its envelope built now, so it can be stored and replayed."""
    code = getattr(request, "api_status_code", 2)
    return Response(envelope(status, code, **data), status=status)

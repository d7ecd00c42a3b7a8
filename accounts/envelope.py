"""The API envelope (docs/api.md), built in exactly one place.

Every API answer is JSON with `response` (the HTTP status, as a string) and
`status_code` (as a string). Errors come from domain exceptions and DRF's own, mapped
here by one table; successes are wrapped by `EnvelopeRenderer`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts import errors

logger = logging.getLogger(__name__)

# status_code names (docs/api.md).
OK_IP = 1
OK_OVER_IP = 2
API_KEY_ERROR = 3
UNAUTHORIZED_IP = 4
PARAM_ERROR = 5
TOKEN_OR_ID_DEVICE_ERROR = 6
MISSING_TO_NUMBER = 7
MISSING_MSG = 8
BALANCE_ERROR = 9

# Domain error → (status_code, HTTP status). The one table.
ERROR_TABLE: dict[type[errors.DomainError], tuple[int, int]] = {
    errors.InvalidApiKey: (API_KEY_ERROR, 401),
    errors.IpNotAllowed: (UNAUTHORIZED_IP, 403),
    errors.TargetNotFound: (TOKEN_OR_ID_DEVICE_ERROR, 400),
    errors.MissingTo: (MISSING_TO_NUMBER, 400),
    errors.MissingMsg: (MISSING_MSG, 400),
    errors.InvalidParameter: (PARAM_ERROR, 400),
    errors.InsufficientCredit: (BALANCE_ERROR, 402),
    errors.SpendingCapReached: (BALANCE_ERROR, 402),
    errors.NotFound: (TOKEN_OR_ID_DEVICE_ERROR, 404),
    errors.Conflict: (PARAM_ERROR, 409),
    errors.IdempotencyInProgress: (PARAM_ERROR, 409),
    errors.IdempotencyMismatch: (PARAM_ERROR, 422),
    errors.RateLimited: (PARAM_ERROR, 429),
    errors.WrongPin: (PARAM_ERROR, 403),
    errors.BodyTooLarge: (PARAM_ERROR, 413),
}


def envelope(http_status: int, status_code: int, **fields: Any) -> dict[str, Any]:
    """The API envelope (docs/api.md): `response` and `status_code` as strings, then the fields."""
    return {"response": str(http_status), "status_code": str(status_code), **fields}


def body_too_large(limit: int) -> bytes:
    """The 413 answer's body (JSON) for a request body over `limit` bytes, written by the
    servers' body limit before any view runs (accounts/lib/bodylimit.py)."""
    message = f"The request body is larger than {limit} bytes."
    return json.dumps(envelope(413, PARAM_ERROR, error=message)).encode()


# Paths whose errors are the envelope, and the other machine-read paths (the SMSGate app's,
# which reads `{"message": …}`), for answers made outside the views (404, 500, the input
# guard of accounts/middleware.py). The enrolment's `{"error": …}` is the envelope's too.
ENVELOPE_PREFIXES = ("/api/v1/", "/tools/api.pl", "/api/device/")
JSON_PREFIXES = ("/api/", "/3rdparty/")


def error_for_path(path: str, http_status: int, sentence: str, status_code: int = PARAM_ERROR) -> JsonResponse | None:
    """An error answer made outside the API's views, in the shape the path's clients read;
    None for a panel path (it gets a page)."""
    if path.startswith(ENVELOPE_PREFIXES):
        return JsonResponse(envelope(http_status, status_code, error=sentence), status=http_status)
    if path.startswith(JSON_PREFIXES):
        return JsonResponse({"message": sentence}, status=http_status)
    return None


def error_response(exc: errors.DomainError) -> Response:
    """The envelope answer for a domain error."""
    status_code, http_status = ERROR_TABLE.get(type(exc), (PARAM_ERROR, 400))
    body = envelope(http_status, status_code, error=exc.message)
    for key, value in exc.details.items():
        body[key] = value
    response = Response(body, status=http_status)
    if isinstance(exc, errors.RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _drf_message(detail: Any) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _drf_message(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_drf_message(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error answer carries the envelope."""
    if isinstance(exc, errors.DomainError):
        return error_response(exc)
    unusable = errors.input_error(exc)
    if unusable is not None:
        # The request's fault, but past the view's checks: kept in the log to close the gap.
        logger.warning("refused unusable input: %s", unusable, exc_info=exc)
        return Response(envelope(400, PARAM_ERROR, error=unusable), status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        status_code = API_KEY_ERROR
    elif isinstance(exc, drf_exceptions.NotFound):
        status_code = TOKEN_OR_ID_DEVICE_ERROR
    else:
        status_code = PARAM_ERROR
    message = _drf_message(getattr(exc, "detail", str(exc)))
    response.data = envelope(response.status_code, status_code, error=message)
    return response


class EnvelopeRenderer(JSONRenderer):
    """Wraps successful answers in the envelope; the view sets `request.api_status_code`."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        renderer_context = renderer_context or {}
        response = renderer_context.get("response")
        request = renderer_context.get("request")
        if response is not None and response.status_code < 400 and isinstance(data, dict) and "response" not in data:
            code = getattr(request, "api_status_code", OK_OVER_IP) if request is not None else OK_OVER_IP
            data = envelope(response.status_code, code, **data)
        return super().render(data, accepted_media_type, renderer_context)

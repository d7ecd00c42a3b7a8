"""The OpenAPI description of the public API's envelope and authentication.

Views describe only their own fields; this hook wraps every answer of the public API in
the API envelope (docs/api.md) (`response` and `status_code` as strings) and documents the error
answers every operation may give, so a schema-driven checker (schemathesis) can validate
real answers against it.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

PUBLIC_PREFIXES = ("/api/v1/", "/tools/api.pl")
# SMSGate's client API (messaging/smsgate/): plain JSON, errors as {"message": …}.
SMSGATE_PREFIX = "/3rdparty/v1/"
# Served too, and left out of the schema: the private server's prefix, the singular
# `/message` paths and the older names of the inbox refresh (same views).
SMSGATE_ALIAS_PREFIX = "/api/3rdparty/v1/"
SMSGATE_ALIASES = re.compile(r"/3rdparty/v1/(message(/.*)?|inbox/export|messages/inbox/export)")
SMSGATE_ERROR_ANSWERS = {
    "400": "Invalid parameter, unknown list or phone, unsupported message kind.",
    "401": "Missing or wrong credentials (Basic login:password, or a Bearer API key or token).",
    "402": "Not enough credit for every recipient.",
    "403": "IP address not on the API key's allow-list, or a token without the scope.",
    "404": "Unknown id, or another account's.",
    "405": "Method not allowed.",
    "409": "A message with this id exists, or it can no longer be cancelled.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "429": "Too many requests for this API key; see Retry-After.",
}
SMSGATE_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "A human sentence."}},
    "required": ["message"],
}
# GenioSms's path answers every envelope with HTTP 200 (messaging/api/send.py).
ALWAYS_200_PATHS = ("/tools/api.pl",)

ERROR_ANSWERS = {
    "400": "Invalid parameter (5), unknown list or device (6), missing `to` (7) or `msg` (8).",
    "401": "Missing or wrong API key (3).",
    "402": "Not enough credit for all parts (9).",
    "403": "The caller's IP is not on the key's allow-list (4).",
    "404": "Unknown id, or another account's (6).",
    "405": "Method not allowed (5).",
    "409": "Conflict: the message left `queued`, or the Idempotency-Key is still in use (5).",
    "413": "Request body too large (5).",
    "415": "Unsupported media type (5).",
    "422": "Idempotency-Key reused with different parameters (5).",
    "429": "Too many requests for this API key; see Retry-After (5).",
}

ENVELOPE_SCHEMA = {
    "type": "object",
    "properties": {
        "response": {"type": "string", "description": "The HTTP status, as a string.", "example": "200"},
        "status_code": {
            "type": "string",
            "enum": [str(code) for code in range(1, 10)],
            "description": "1 ok_ip, 2 ok_over_ip, 3 api_key_error, 4 unauthorized_ip, 5 param_error, "
            "6 token_or_id_device_error, 7 missing_to_number, 8 missing_msg, 9 balance_error.",
        },
    },
    "required": ["response", "status_code"],
}

ERROR_SCHEMA = {
    "allOf": [
        {"$ref": "#/components/schemas/Envelope"},
        {
            "type": "object",
            "properties": {"error": {"type": "string", "description": "A human sentence."}},
            "required": ["error"],
        },
    ]
}


class AutoSchema(SpectacularAutoSchema):
    """Names nested serializers after their view (`SendMessageApiOutput`), so every
    view's `InputSerializer`/`OutputSerializer` gets its own component."""

    def _get_serializer_name(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer = cls.__qualname__.split(".")[:-1]
        default = cls.__name__.removesuffix("Serializer")
        if outer and name in (default, default + "Request"):
            return "".join(outer) + name
        return name


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <key>`; the `api_key` (or `api`) parameter works too."""

    target_class = "accounts.api.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "The API key (or pass `api_key`)."}


class SmsGateAuthenticationScheme(OpenApiAuthenticationExtension):
    """SMSGate's client API: Basic with a list's SMSGate login, or Bearer (API key or token)."""

    target_class = "messaging.smsgate.auth.SmsGateAuthentication"
    name = ["SmsGateBasic", "SmsGateBearer"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "basic", "description": "The login and password of a list's SMSGate sign-up."},
            {"type": "http", "scheme": "bearer", "description": "A Phonefleet API key, or a token from /auth/token."},
        ]


def skip_aliases(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular PREPROCESSING_HOOK: SMSGate's aliases (same views) stay out of the schema."""
    return [
        endpoint
        for endpoint in endpoints
        if not endpoint[0].startswith(SMSGATE_ALIAS_PREFIX) and not SMSGATE_ALIASES.fullmatch(endpoint[0])
    ]


def _smsgate_errors(operation: dict[str, Any]) -> None:
    for status, description in SMSGATE_ERROR_ANSWERS.items():
        operation["responses"].setdefault(
            status,
            {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SmsGateError"}}},
            },
        )


def _wrap_success(responses: dict[str, Any]) -> None:
    for status, answer in responses.items():
        if not status.startswith("2"):
            continue
        for media in answer.get("content", {}).values():
            media["schema"] = {"allOf": [{"$ref": "#/components/schemas/Envelope"}, media.get("schema", {})]}


def _only_200(operation: dict[str, Any]) -> None:
    """Success and refusal alike come with HTTP 200; so no HTTP-level authentication either
    (a wrong key is the envelope's code 3, not a 401)."""
    success = operation["responses"]["200"]["content"]["application/json"]["schema"]
    operation["responses"] = {
        "200": {
            "description": "Every answer, refusals included: the outcome is in `response` and `status_code`.",
            "content": {"application/json": {"schema": {"oneOf": [success, {"$ref": "#/components/schemas/Error"}]}}},
        }
    }
    operation["security"] = [{}]


def add_envelope(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: envelope on every public answer, error answers listed."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Envelope"] = ENVELOPE_SCHEMA
    schemas["Error"] = ERROR_SCHEMA
    schemas["SmsGateError"] = SMSGATE_ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        if path.startswith(SMSGATE_PREFIX):
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    _smsgate_errors(operation)
                    if operation.get("security"):  # either scheme (a list of alternatives)
                        operation["security"] = [{"SmsGateBasic": []}, {"SmsGateBearer": []}]
            continue
        if not path.startswith(PUBLIC_PREFIXES):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _wrap_success(operation["responses"])
            if path in ALWAYS_200_PATHS:
                _only_200(operation)
                continue
            for status, description in ERROR_ANSWERS.items():
                operation["responses"].setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
    return result

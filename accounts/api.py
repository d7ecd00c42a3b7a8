"""API-key authentication shared by every public API view, and the balance endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from django.http import HttpRequest
from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import errors, services
from accounts.envelope import EnvelopeRenderer
from accounts.middleware import ClientRequest
from accounts.models import Account

DEFAULT_RATE_LIMIT_PER_MINUTE = 600


class ApiRequest(Request):
    """DRF's request in the public API, keeping the Django request it wraps (DRF keeps it
    privately) and what the API-key check adds."""

    api_call: services.ApiCall
    api_status_code: int

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        # Every request passed ClientIpMiddleware (settings.MIDDLEWARE).
        self.http = cast(ClientRequest, request)

    @property
    def client_ip(self) -> str:
        return self.http.client_ip


class ApiView(APIView):
    """An API view whose handlers get an ApiRequest."""

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> ApiRequest:
        """DRF's own (its views guide, "Dispatch methods"), making an ApiRequest."""
        return ApiRequest(
            request,
            parsers=self.get_parsers(),
            authenticators=self.get_authenticators(),
            negotiator=self.get_content_negotiator(),
            parser_context=self.get_parser_context(request),
        )


def body_of(request: ApiRequest) -> Any:
    """The parsed body: a form by Django itself (`request.POST`, the same QueryDict that
    DRF's form parser would build, without DRF's parsing machinery around it), anything
    else (JSON, multipart) by the view's DRF parsers."""
    if request.http.content_type == "application/x-www-form-urlencoded":
        try:
            return request.http.POST
        except RawPostDataException:  # DRF's parsers read the body first: use what they made of it
            return request.data
    return request.data


def api_key_from_request(request: ApiRequest) -> str | None:
    """The key from `Authorization: Bearer`, or the `api_key` / `api` parameter (query or body)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")  # not `headers`: see ApiCorsMiddleware
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    for name in ("api_key", "api"):
        value = request.query_params.get(name)
        if value:
            return value
    try:
        data = body_of(request)
    except Exception:  # unparsable body: the view reports it after authentication
        return None
    if hasattr(data, "get"):
        for name in ("api_key", "api"):
            value = data.get(name)
            if isinstance(value, str) and value:
                return value
    return None


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates by API key (code 3) and then checks the key's IP rule (code 4)."""

    def authenticate(self, request: Request) -> tuple[None, services.AuthenticatedKey]:
        assert isinstance(request, ApiRequest)  # made by ApiKeyView.initialize_request
        call = services.authenticate_api_call(secret=api_key_from_request(request))
        key = call.key
        # CORS answers follow the key's origins (see ApiCorsMiddleware).
        request.http.cors_origins = key.cors_origins
        request.api_status_code = services.check_ip(key=key, ip=request.client_ip)
        request.api_call = call
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def enforce_rate_limit(call: services.ApiCall) -> None:
    """A fixed one-minute window per key, counted in the shared cache by
    `authenticate_api_call`; raises RateLimited (429)."""
    limit = call.key.rate_limit_per_minute or DEFAULT_RATE_LIMIT_PER_MINUTE
    if call.calls_this_minute > limit:
        raise errors.RateLimited(
            f"This API key may make {limit} requests per minute.",
            retry_after=services.CALL_WINDOW_SECONDS - int(time.time() % services.CALL_WINDOW_SECONDS),
        )


class JsonOnly(DefaultContentNegotiation):
    """The API answers JSON whatever the client accepts (the envelope of docs/api.md), so there is
    nothing to negotiate: the first renderer, without parsing the Accept header. Request
    bodies are still parsed by their content type (form and JSON found without parsing
    media types)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        # The usual bodies by their exact media type; anything else as DRF matches it.
        media_type = (request.content_type or "").partition(";")[0].strip().lower()
        for parser in parsers:
            if parser.media_type == media_type:
                return parser
        return super().select_parser(request, parsers)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class ApiKeyView(ApiView):
    """Base of every public API operation: key, IP rule, rate limit, the envelope."""

    authentication_classes = [ApiKeyAuthentication]
    renderer_classes = [EnvelopeRenderer]
    content_negotiation_class = JsonOnly

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        key = request.auth
        if not isinstance(key, services.AuthenticatedKey) or not isinstance(request, ApiRequest):
            raise errors.InvalidApiKey()
        enforce_rate_limit(request.api_call)

    @property
    def key(self) -> services.AuthenticatedKey:
        key = self.request.auth
        assert isinstance(key, services.AuthenticatedKey)  # `initial` refused the call otherwise
        return key

    def get_account(self) -> Account:
        return Account.objects.get(pk=self.key.account_id)


API_KEY_PARAMETER = OpenApiParameter(
    "api_key", str, OpenApiParameter.QUERY, required=False, description="The API key (or use a Bearer header)."
)


class BalanceApi(ApiKeyView):
    """The account's credit balance, what it owes, and its price per SMS part."""

    class OutputSerializer(serializers.Serializer[Any]):
        balance = serializers.IntegerField()
        debt = serializers.IntegerField(
            help_text="Credits owed for messages sent after they had been refunded; while above 0,"
            " sending is refused (402) until a top-up repays it."
        )
        price_per_part = serializers.IntegerField()

    @extend_schema(operation_id="balance", parameters=[API_KEY_PARAMETER], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        row = Account.objects.values("balance", "debt", "price_per_part").get(pk=self.key.account_id)
        return Response(self.OutputSerializer(row).data)

"""The API's JSON parser: DRF's, through `accounts.lib.safejson`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from accounts.lib import safejson


class JsonParser(JSONParser):
    """A body nested too deeply, or whose strings hold NUL or an unpaired surrogate, is
    refused (400) before any view reads it. Every JSON body of the API, the enrolment and
    the SMSGate app is parsed by this one (settings.REST_FRAMEWORK, and the views that list
    their parsers); `tests/test_hostile_input.py` checks that no view uses DRF's own."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return safejson.loads(stream.read().decode(encoding))
        except safejson.UnusableJson as exc:
            raise ParseError(str(exc))
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}")

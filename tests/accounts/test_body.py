"""accounts.api.body_of: how the API reads a request's body parameters."""

from __future__ import annotations

import json

from django.test import RequestFactory
from rest_framework.parsers import FormParser, JSONParser

from accounts.api import ApiRequest, body_of


class CountingFormParser(FormParser):
    """DRF's form parser, counting how often DRF runs it."""

    calls = 0

    def parse(self, *args, **kwargs):
        type(self).calls += 1
        return super().parse(*args, **kwargs)


def drf_request(django_request):
    CountingFormParser.calls = 0
    return ApiRequest(django_request, parsers=[JSONParser(), CountingFormParser()])


def test_a_form_is_read_by_django_without_drf_parsing_it():
    request = drf_request(
        RequestFactory().post("/x", "to=%2B39333&msg=Ciao+%E2%98%95", "application/x-www-form-urlencoded")
    )
    data = body_of(request)
    assert data is request.http.POST
    assert (data["to"], data["msg"]) == ("+39333", "Ciao ☕")
    assert CountingFormParser.calls == 0  # DRF's parsers never ran
    assert request.data == data  # and DRF still reads the same form afterwards


def test_json_goes_through_drf_and_a_form_already_parsed_by_drf_is_reused():
    request = drf_request(RequestFactory().post("/x", json.dumps({"to": "+39333"}), "application/json"))
    assert body_of(request) == {"to": "+39333"}
    form = drf_request(RequestFactory().post("/x", "to=1", "application/x-www-form-urlencoded"))
    parsed = form.data
    assert CountingFormParser.calls == 1
    assert body_of(form) is parsed

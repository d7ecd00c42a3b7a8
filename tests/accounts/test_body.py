"""accounts.api.body_of: how the API reads a request's body parameters."""

from __future__ import annotations

import json

from django.test import RequestFactory
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.request import Empty, Request

from accounts.api import body_of


def drf_request(django_request):
    return Request(django_request, parsers=[JSONParser(), FormParser()])


def test_a_form_is_read_by_django_without_drf_parsing_it():
    request = drf_request(
        RequestFactory().post("/x", "to=%2B39333&msg=Ciao+%E2%98%95", "application/x-www-form-urlencoded")
    )
    data = body_of(request)
    assert data is request._request.POST
    assert (data["to"], data["msg"]) == ("+39333", "Ciao ☕")
    assert request._full_data is Empty  # DRF's parsers never ran


def test_json_goes_through_drf_and_a_form_already_parsed_by_drf_is_reused():
    request = drf_request(RequestFactory().post("/x", json.dumps({"to": "+39333"}), "application/json"))
    assert body_of(request) == {"to": "+39333"}
    form = drf_request(RequestFactory().post("/x", "to=1", "application/x-www-form-urlencoded"))
    parsed = form.data
    assert body_of(form) is parsed

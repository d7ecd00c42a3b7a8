"""Helpers for the verification tests: calls to the API, and a phone that takes the SMS."""

from __future__ import annotations

import re

from django.test import Client

from devices.models import Device, PhoneList
from messaging.models import Message, Verification
from messaging.services import dispatch
from tests import factories

ITALIAN = "+393331234567"


def start(client: Client, secret: str, **params: object) -> dict:
    """POST /api/v1/verify; the answer's body (its envelope checked)."""
    response = client.post("/api/v1/verify", {"to": ITALIAN, **params}, HTTP_AUTHORIZATION=f"Bearer {secret}")
    body = response.json()
    assert body["response"] == str(response.status_code), body
    return body


def check(client: Client, secret: str, **params: object) -> dict:
    """POST /api/v1/verify/check; the answer's body (its envelope checked)."""
    response = client.post("/api/v1/verify/check", params, HTTP_AUTHORIZATION=f"Bearer {secret}")
    body = response.json()
    assert body["response"] == str(response.status_code), body
    return body


def phone_of(phone_list: PhoneList) -> Device:
    """An online phone of the list (one per list is enough)."""
    found = Device.objects.filter(phone_list=phone_list).first()
    return found or factories.make_device(phone_list=phone_list, online=True)


def code_sent(verification_id: str) -> str:
    """The code, as a phone of the verification's list gets it: by claiming its SMS (the
    `assign` frame's text). The database holds no other copy."""
    verification = Verification.objects.select_related("message__phone_list").get(public_id=verification_id)
    message = verification.message
    assert message is not None and message.phone_list is not None
    claimed = dispatch.claim_message(device=phone_of(message.phone_list), message_id=message.public_id)
    assert claimed is not None, "the verification's SMS could not be claimed"
    found = re.search(r"\d{4,10}", claimed.text)
    assert found, claimed.text
    return found.group(0)


def masked_text(verification_id: str) -> str:
    """The SMS text as stored (and as the API and the panel show it)."""
    message_id = Verification.objects.values_list("message_id", flat=True).get(public_id=verification_id)
    return Message.objects.get(pk=message_id).text

"""Create an account with one API key and one list, for scripts and tests."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import columns, errors, services
from accounts.models import Account, User
from devices import services as device_services
from devices.smsgate import services as smsgate_services


class Command(BaseCommand):
    help = "Create an account with one API key and one list; --json prints the credentials."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--credit", type=int, default=0)
        parser.add_argument("--password", default=None)
        parser.add_argument("--rate", type=int, default=None, help="messages per minute per phone")
        parser.add_argument("--json", action="store_true", help="print the credentials as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"].strip()
        if User.objects.filter(username=email).exists():
            raise CommandError(f"An account with the email {email} already exists.")
        if options["credit"] < 0:
            raise CommandError("--credit cannot be negative.")
        password = options["password"] or secrets.token_urlsafe(12)
        try:
            # Numbers their columns cannot hold are refused, never stored wrapped.
            columns.check_integer(options["credit"], Account, "balance", param="--credit")
            result = create_account_bundle(
                email=email, password=password, credit=options["credit"], rate=options["rate"]
            )
        except errors.InvalidParameter as exc:
            raise CommandError(exc.message) from None
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            for name, value in result.items():
                self.stdout.write(f"{name:>12}: {value}")


def create_account_bundle(*, email: str, password: str, credit: int, rate: int | None) -> dict[str, Any]:
    """Account + user + list + default-list API key (+ mobile token); the credentials as a dict."""
    with transaction.atomic():
        account, _user = services.create_account(email=email, password=password, credit=credit)
        phone_list = device_services.create_list(account=account, name="Default", rate_limit_per_minute=rate)
        _key, secret = services.create_api_key(account=account, name="Default API", default_list=phone_list)
        result: dict[str, Any] = {
            "account": account.pk,
            "email": email,
            "password": password,
            "api_key": secret,
            "list": phone_list.token,
            "pin": phone_list.pin,
        }
        _token, result["mobile_token"] = smsgate_services.create_enrolment_token(phone_list=phone_list)
    return result

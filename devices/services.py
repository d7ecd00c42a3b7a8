"""Business operations on lists and phones."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts import errors
from accounts.lib import tokens
from accounts.models import Account
from devices.models import PhoneList

LIST_TOKEN_PREFIX = "lst"
PIN_DIGITS = 8


def create_list(
    *,
    account: Account,
    name: str,
    pin: str | None = None,
    default_country: str | None = None,
    rate_limit_per_minute: int | None = None,
) -> PhoneList:
    """A new list with a fresh token and a random PIN (or the given one).
    Raises InvalidParameter for a PIN that is not 6–16 digits or is taken."""
    if pin is not None and not (pin.isdigit() and 6 <= len(pin) <= 16):
        raise errors.InvalidParameter("A PIN is 6 to 16 digits.")
    for _ in range(5):
        try:
            with transaction.atomic():
                return PhoneList.objects.create(
                    account=account,
                    name=name,
                    token=tokens.public_id(LIST_TOKEN_PREFIX),
                    pin=pin or tokens.random_pin(PIN_DIGITS),
                    default_country=(default_country or settings.DEFAULT_COUNTRY).upper(),
                    rate_limit_per_minute=rate_limit_per_minute,
                )
        except IntegrityError:
            if pin is not None:
                raise errors.InvalidParameter("That PIN is already used by another list.") from None
    raise RuntimeError("could not find a free PIN")

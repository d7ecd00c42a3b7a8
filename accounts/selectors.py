"""Reads of accounts shared by several apps' pages."""

from __future__ import annotations

from accounts import errors
from accounts.models import ApiKey


def get_key_for_account(*, account_id: int, pk: int) -> ApiKey:
    """The account's API key `pk`, with its default list. Raises NotFound, for other
    accounts' keys too."""
    found = ApiKey.objects.select_related("default_list").filter(account_id=account_id, pk=pk).first()
    if found is None:
        raise errors.NotFound("Unknown API key.")
    return found

"""Code examples for pages of other apps: the accounts app's key-created page shows how
to send with the new key, but the examples (every API operation) are this app's."""

from __future__ import annotations

from typing import Any

from django import template

from accounts.models import ApiKey
from accounts.views import base_url_for
from messaging import selectors
from messaging.lib import snippets

register = template.Library()


@register.simple_tag(takes_context=True)
def key_examples(context: dict[str, Any], key: ApiKey, secret: str) -> list[dict[str, str]]:
    """The send examples, in every language, holding a just-created key's secret."""
    values = selectors.snippet_context(account_id=key.account_id, base_url=base_url_for(context["request"]), key=key)
    return snippets.examples(snippets.OPERATIONS_BY_SLUG["send"], snippets.with_key(values, secret))

"""Template filters of the panel."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def codespans(text: str) -> SafeString:
    """Escapes the text and shows `backticked` words as code, as the API reference writes them."""
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)))  # noqa: S308 (escaped first)

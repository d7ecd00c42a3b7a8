"""The panel's template filters."""

from __future__ import annotations

from accounts.templatetags.panel import codespans


def test_codespans_shows_backticked_words_as_code_and_escapes_the_rest():
    assert codespans("Send `msg` <b>now</b>") == "Send <code>msg</code> &lt;b&gt;now&lt;/b&gt;"


def test_codespans_cannot_smuggle_html_inside_backticks():
    assert codespans("`<script>`") == "<code>&lt;script&gt;</code>"

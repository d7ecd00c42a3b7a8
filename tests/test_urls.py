"""The URL table: no route hides another, so the order of config/urls.py only decides how
fast a path is found, never where it goes (the busiest routes come first)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.urls import URLPattern, URLResolver, get_resolver


def leaf_routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from leaf_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def example_path(route: str) -> str:
    """A path the route matches: each converter replaced by a value it accepts."""
    path = re.sub(r"<int:[^>]+>", "7", route)
    return "/" + re.sub(r"<(?:str:|slug:)?[^>]+>", "abc", path)


def test_every_route_is_reached_by_its_own_paths_whatever_comes_before_it():
    checked = 0
    for route, pattern in leaf_routes(get_resolver().url_patterns):
        if "^" in route:  # a regex route (SMSGate's catch-all for the rest of its prefix)
            continue
        match = get_resolver().resolve(example_path(route))
        assert match.func is pattern.callback, f"{route} is hidden by {match.route}"
        checked += 1
    assert checked > 150


def test_the_send_api_is_matched_before_the_other_apps_routes():
    first = get_resolver().url_patterns[0]
    assert isinstance(first, URLResolver)
    names = {pattern.name for _route, pattern in leaf_routes(first.url_patterns)}
    assert {"api-send", "geniosms-send"} <= names

"""JSON from strangers: parsed with a nesting limit, and holding only text that PostgreSQL and
UTF-8 can carry. Django-free.

`json.loads` of `[[[…]]]` a few kilobytes deep raises RecursionError (not ValueError), and a
document just under that depth breaks the first recursive function that walks it; `\\u0000`
cannot be stored in a PostgreSQL text column and a lone `\\ud800` cannot be encoded as UTF-8.
Each is refused here with UnusableJson, a ValueError whose message is a sentence for the
sender, so every JSON entry point (the API's parser, the phones' frames, the SMSGate app's
webhooks) refuses them alike.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Far above any document of the protocols (the deepest, an SMSGate health ping, is 5).
MAX_DEPTH = 32

# In JSON text a NUL or a surrogate can only arrive escaped: raw control characters are not
# JSON, and valid UTF-8 cannot hold a surrogate. A pair (`\ud83d\ude00`, as clients that
# escape everything send emoji) decodes to one character and is fine; only a document with
# a `\u0000` or a surrogate escape outside a pair has its strings read (an escaped
# backslash before `u0000` is text, and passes that reading).
_SUSPECT_ESCAPE = re.compile(
    r"\\u(?:0000"
    r"|[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|[dD][c-fC-F][0-9a-fA-F]{2}(?<![dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))"
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnusableJson(ValueError):
    """JSON refused for its shape or its text; the message says why, for the sender."""


def _refuse_constant(name: str) -> Any:
    raise UnusableJson(f"{name} is not a JSON number.")


# One decoder (json.loads with an argument builds a new one per call: a phone frame's cost).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The document `data` holds (bytes are UTF-8). Raises UnusableJson when it nests deeper
    than `max_depth` or a string holds NUL or an unpaired surrogate, and ValueError (its
    JSONDecodeError or UnicodeDecodeError) when it is not JSON at all. NaN and Infinity,
    which are not JSON, are refused too."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise UnusableJson(f"JSON may nest at most {max_depth} levels deep.") from None
    # Fewer brackets than the limit cannot nest deeper than it: most documents skip the walk.
    deep = text.count("[") + text.count("{") > max_depth
    suspect = "\\u" in text and _SUSPECT_ESCAPE.search(text) is not None
    if deep or suspect:
        check(value, max_depth=max_depth, text=suspect)
    return value


def has_unstorable_text(value: str) -> bool:
    """True if `value` holds NUL or an unpaired surrogate."""
    return _UNSTORABLE.search(value) is not None


def check(value: Any, *, max_depth: int = MAX_DEPTH, text: bool = True) -> None:
    """Raises UnusableJson if decoded JSON `value` nests deeper than `max_depth` or (with
    `text`) holds a key or string with NUL or an unpaired surrogate. Level by level, not
    recursion, so any depth is measured without reaching Python's recursion limit."""
    level = [value]
    for _ in range(max_depth):
        deeper: list[Any] = []
        for node in level:
            if type(node) is dict:
                children: Any = node.values()
                if text:
                    deeper += node.keys()
            elif type(node) is list:
                children = node
            else:  # a string, queued only to read its text
                _check_text(node)
                continue
            if text:
                deeper += [c for c in children if type(c) is dict or type(c) is list or type(c) is str]
            else:
                deeper += [c for c in children if type(c) is dict or type(c) is list]
        if not deeper:
            return
        level = deeper
    for node in level:
        if type(node) is dict or type(node) is list:
            raise UnusableJson(f"JSON may nest at most {max_depth} levels deep.")
        _check_text(node)


def _check_text(value: str) -> None:
    if _UNSTORABLE.search(value):
        raise UnusableJson("JSON strings must not contain NUL or unpaired surrogate characters.")

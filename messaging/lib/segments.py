"""How many SMS parts a text takes, counted the way phones split it. Django-free.

A text that fits the GSM 03.38 alphabet (with its extension table) is sent as GSM-7:
160 septets in one part, 153 per part when concatenated; an extension character takes
two septets and is never split across parts. Anything else is sent as UCS-2: 70 UTF-16
code units in one part, 67 per part, so an emoji (a surrogate pair) counts 2 and a
pair is never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

GSM7 = "gsm7"
UCS2 = "ucs2"

# GSM 03.38 basic character set (one septet each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: escape + character, so two septets each.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE_PART = {GSM7: 160, UCS2: 70}
MULTI_PART = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True)
class Segments:
    encoding: str  # "gsm7" or "ucs2"
    parts: int
    # Septets (GSM-7) or UTF-16 code units (UCS-2) the whole text takes.
    units: int


def _unit_sizes(text: str) -> tuple[str, list[int]]:
    """The encoding and the size of each character in that encoding's units."""
    sizes: list[int] = []
    for char in text:
        if char in GSM7_BASIC:
            sizes.append(1)
        elif char in GSM7_EXTENSION:
            sizes.append(2)
        else:
            return UCS2, [2 if ord(c) > 0xFFFF else 1 for c in text]
    return GSM7, sizes


def _pack(sizes: list[int], capacity: int) -> int:
    """Parts needed when characters are packed greedily and never split."""
    parts, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            parts, used = parts + 1, 0
        used += size
    return parts


# Bulk sends count the same text for every recipient.
@lru_cache(maxsize=256)
def count_segments(text: str) -> Segments:
    """The encoding, number of parts and total units of `text` (an empty text is 1 part)."""
    encoding, sizes = _unit_sizes(text)
    units = sum(sizes)
    if units <= SINGLE_PART[encoding]:
        return Segments(encoding, 1, units)
    return Segments(encoding, _pack(sizes, MULTI_PART[encoding]), units)

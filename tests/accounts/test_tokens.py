"""accounts/lib/tokens.py: public ids and secret tokens (Django-free)."""

from __future__ import annotations

from collections import Counter

from accounts.lib import tokens


def test_public_ids_have_the_prefix_and_17_base62_characters():
    ids = [tokens.public_id("msg") for _ in range(2000)]
    assert all(i.startswith("msg_") and len(i) == 4 + 17 for i in ids)
    assert all(set(i[4:]) <= set(tokens.ALPHABET) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_position_of_a_public_id_uses_the_whole_alphabet():
    # A leading digit stuck at "0" (too small a random number) or a missing letter
    # (an off-by-one in the base conversion) would show here.
    ids = [tokens.public_id("dev") for _ in range(5000)]
    for position in (4, 12, 20):
        seen = Counter(i[position] for i in ids)
        assert set(seen) == set(tokens.ALPHABET)


def test_a_token_checksum_catches_a_typo():
    token = tokens.generate_token("pf_live")
    assert tokens.has_valid_checksum(token, "pf_live")
    typo = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not tokens.has_valid_checksum(typo, "pf_live")


def test_public_id_characters_are_uniform():
    # Bytes 248-255 are dropped, not folded onto the first 8 characters: folding would make
    # "0"-"7" about 1.25 times as common as the rest, which this would show.
    seen = Counter("".join(tokens.public_id("x")[2:] for _ in range(6000)))
    expected = 6000 * 17 / 62
    assert set(seen) == set(tokens.ALPHABET)
    assert all(abs(count - expected) < 0.15 * expected for count in seen.values())

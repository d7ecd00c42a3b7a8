import pytest

from messaging.lib.segments import GSM7, UCS2, count_segments


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", 1),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 153 * 10, 10),
    ],
)
def test_it_counts_plain_gsm7_texts_as_160_then_153_per_part(text, parts):
    result = count_segments(text)
    assert (result.encoding, result.parts) == (GSM7, parts)


def test_accented_letters_of_the_gsm_alphabet_stay_gsm7():
    result = count_segments("Perché è già là? Ça va, Øresund, ñandù, ß")
    assert result.encoding == GSM7
    assert result.units == len("Perché è già là? Ça va, Øresund, ñandù, ß")


@pytest.mark.parametrize("char", list("^{}\\[~]|€"))
def test_extension_characters_take_two_septets(char):
    assert count_segments(char).units == 2
    assert count_segments(char * 80).parts == 1
    assert count_segments("a" + char * 80).parts == 2


def test_an_extension_character_is_never_split_across_parts():
    # 152 septets then a 2-septet "€": the euro moves whole to the second part.
    text = "a" * 152 + "€" + "a" * 152
    result = count_segments(text)
    assert result.units == 306
    assert result.parts == 3


def test_a_character_outside_gsm7_switches_the_whole_text_to_ucs2():
    result = count_segments("Hello ć")
    assert (result.encoding, result.parts, result.units) == (UCS2, 1, 7)


@pytest.mark.parametrize(
    ("length", "parts"),
    [(70, 1), (71, 2), (134, 2), (135, 3)],
)
def test_it_counts_ucs2_texts_as_70_then_67_per_part(length, parts):
    assert count_segments("ж" * length).parts == parts


def test_an_emoji_counts_two_utf16_units():
    result = count_segments("👍")
    assert (result.encoding, result.units) == (UCS2, 2)
    assert count_segments("👍" * 35).parts == 1
    assert count_segments("👍" * 35 + "a").parts == 2


def test_a_surrogate_pair_is_never_split_across_parts():
    # 66 units then an emoji (2 units) does not fit the 67-unit part: it moves whole.
    text = "ж" * 66 + "👍" + "ж" * 66
    assert count_segments(text).parts == 3


def test_a_long_unicode_text_takes_many_parts():
    assert count_segments("Привет! " * 100).parts == 12


def test_an_accent_outside_the_gsm_alphabet_needs_ucs2():
    # "ù" is GSM-7, "ú" is not.
    assert count_segments("più").encoding == GSM7
    assert count_segments("ú").encoding == UCS2

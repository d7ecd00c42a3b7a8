import pytest

from messaging.lib.numbers import InvalidNumber, example_number, normalise_number, restore_lost_plus


@pytest.mark.parametrize(
    ("text", "country", "expected"),
    [
        ("+393331234567", "IT", "+393331234567"),
        ("3331234567", "IT", "+393331234567"),
        ("333 123 4567", "IT", "+393331234567"),
        ("00393331234567", "IT", "+393331234567"),
        ("+39 (333) 123-4567", "IT", "+393331234567"),
        ("07700 900123", "GB", "+447700900123"),
        ("07700900123", "gb", "+447700900123"),
        ("(202) 555-0142", "US", "+12025550142"),
        ("+12025550142", "IT", "+12025550142"),
        ("  +393331234567 ", "IT", "+393331234567"),
    ],
)
def test_it_normalises_numbers_to_e164(text, country, expected):
    assert normalise_number(text, country) == expected


def test_a_national_number_is_read_in_the_default_country():
    assert normalise_number("0612345678", "FR") == "+33612345678"
    assert normalise_number("0612345678", "NL") == "+31612345678"


@pytest.mark.parametrize("text", ["", "   ", "hello", "12", "+39", "+3933312345678901234", "1" * 41, "++39333"])
def test_it_refuses_what_is_not_a_phone_number(text):
    with pytest.raises(InvalidNumber):
        normalise_number(text, "IT")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 41791234567", "+41791234567"),  # `to=+41791234567` after form decoding
        (" 393331234567", "+393331234567"),
        ("3331234567", "3331234567"),
        ("+41791234567", "+41791234567"),
        ("  +393331234567 ", "  +393331234567 "),
        (" ", " "),
        ("", ""),
        (" x41", " x41"),
    ],
)
def test_a_leading_space_before_digits_is_the_plus_that_form_decoding_ate(raw, expected):
    assert restore_lost_plus(raw) == expected


@pytest.mark.parametrize(
    ("country", "expected"), [("DE", "+4915123456789"), ("it", "+393123456789"), ("ZZ", "+393123456789")]
)
def test_an_example_number_is_a_mobile_of_the_country_that_the_send_path_accepts(country, expected):
    assert example_number(country) == expected
    assert normalise_number(expected, "IT") == expected

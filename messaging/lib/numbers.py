"""Phone-number normalisation to E.164 with the `phonenumbers` library. Django-free."""

from __future__ import annotations

import phonenumbers

# Longest input we even try to parse; E.164 itself is at most 15 digits.
MAX_INPUT_LENGTH = 40


DIGITS = "0123456789"
# ISO 3166 alpha-2 codes of the countries and territories that have phone numbers.
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)


class InvalidNumber(ValueError):
    """The text is not a phone number we can send to."""


def normalise_number(text: str, default_country: str) -> str:
    """`text` as E.164 (``+393331234567``). National numbers are read in
    `default_country` (ISO 3166 alpha-2); ``00`` prefixes work as usual.
    Raises InvalidNumber with a sentence safe to show the caller."""
    cleaned = text.strip()
    if not cleaned or len(cleaned) > MAX_INPUT_LENGTH:
        raise InvalidNumber(f"{text!r} is not a phone number.")
    try:
        number = phonenumbers.parse(cleaned, (default_country or "").upper() or None)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(f"{text!r} is not a phone number (national numbers are read as {default_country}).")
    # "Possible" (right length for the country), not "valid": numbering plans change
    # faster than the library, and refusing a real new range would lose the customer's SMS.
    if not phonenumbers.is_possible_number(number):
        raise InvalidNumber(f"{text!r} has the wrong length for a phone number of its country.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def restore_lost_plus(raw: str) -> str:
    """`raw` with its `+` put back when form decoding turned it into a space.

    Clients that do not encode their form body or query string (GenioSms's Java POST,
    its Perl proxy) send `to=+41791234567`; decoding reads the `+` as a space, and
    ` 41791234567` would then be read as a national number of the list's country. A
    value that begins with a space right before its digits is therefore international.
    """
    if len(raw) > 1 and raw[0] == " " and raw[1] in DIGITS:
        return "+" + raw[1:]
    return raw


def example_number(country: str) -> str:
    """A made-up mobile number of `country` (ISO 3166 alpha-2) in E.164, from the
    numbering plan's own example (Italy's for a country without one): for test sends."""
    kind = phonenumbers.PhoneNumberType.MOBILE
    number = phonenumbers.example_number_for_type(country.upper(), kind)
    if number is None:
        number = phonenumbers.example_number_for_type("IT", kind)
    assert number is not None  # the library has Italy's example
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """The ISO 3166 alpha-2 country of an E.164 number (`+393331234567` → `IT`); for a
    calling code several countries share (+1, +7, +44…) and a number the library cannot
    place, the code's main country. "" when even the calling code is unknown."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_number(number)
    if not region or region == phonenumbers.UNKNOWN_REGION:
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    return "" if region == phonenumbers.UNKNOWN_REGION else str(region)

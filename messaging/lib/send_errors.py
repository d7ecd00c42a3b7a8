"""Whose fault a failed send was, read from the `error` text of a phone's `failed` report.

Two classes decide what follows (docs/device-protocol.md, "Failed sends"):

- **phone-side** (`PHONE`): this phone could not put the SMS on the air (radio off, no
  service, no SIM, the SMS queue limit, a modem or RIL error…). Another phone of the list
  may well send it: the message goes back to the queue for the others, and this phone is
  paused.
- **recipient-side** (`RECIPIENT`): the message itself cannot go, from any phone (an
  invalid number, a short code the user refused, FDN, a text the radio cannot encode), or
  it is already over (expired, cancelled on the phone, a delivery report after it was
  sent): it fails at once.

Text that names neither is `UNKNOWN`, handled as phone-side (see `fails_over`): a broken
phone whose errors we do not recognise would otherwise fail every message it claims,
each for good, and a fast-failing phone claims the most; trying at most two more phones
is the bounded price of being wrong the other way.

The phones write these texts: Android's SmsManager result names (`RESULT_ERROR_RADIO_OFF`),
its numeric result codes (`2`), the SMSGate app's sentences ("Send result:
RESULT_ERROR_RADIO_OFF (Failed because radio was explicitly turned off)", "sendSMS: Invalid
phone number", "TTL expired"), our agent's (`NO_SIM`), or a person's ("radio off").
Django-free.
"""

from __future__ import annotations

import re
from enum import StrEnum


class ErrorClass(StrEnum):
    PHONE = "phone"
    RECIPIENT = "recipient"
    UNKNOWN = "unknown"


PHONE = ErrorClass.PHONE
RECIPIENT = ErrorClass.RECIPIENT
UNKNOWN = ErrorClass.UNKNOWN

# Android SmsManager result constants (the sent intent's result code), by name without
# the `RESULT_` prefix: their number and whose fault they are.
ANDROID_RESULTS: dict[str, tuple[int, ErrorClass]] = {
    "ERROR_GENERIC_FAILURE": (1, PHONE),
    "ERROR_RADIO_OFF": (2, PHONE),
    "ERROR_NULL_PDU": (3, PHONE),
    "ERROR_NO_SERVICE": (4, PHONE),
    "ERROR_LIMIT_EXCEEDED": (5, PHONE),
    # Fixed Dialling Numbers: this number is not on the SIM's allowed list.
    "ERROR_FDN_CHECK_FAILURE": (6, RECIPIENT),
    "ERROR_SHORT_CODE_NOT_ALLOWED": (7, RECIPIENT),
    "ERROR_SHORT_CODE_NEVER_ALLOWED": (8, RECIPIENT),
    "RADIO_NOT_AVAILABLE": (9, PHONE),
    "NETWORK_REJECT": (10, PHONE),
    "INVALID_ARGUMENTS": (11, RECIPIENT),
    "INVALID_STATE": (12, PHONE),
    "NO_MEMORY": (13, PHONE),
    "INVALID_SMS_FORMAT": (14, RECIPIENT),
    "SYSTEM_ERROR": (15, PHONE),
    "MODEM_ERROR": (16, PHONE),
    "NETWORK_ERROR": (17, PHONE),
    "ENCODING_ERROR": (18, RECIPIENT),
    "INVALID_SMSC_ADDRESS": (19, PHONE),
    "OPERATION_NOT_ALLOWED": (20, PHONE),
    "INTERNAL_ERROR": (21, PHONE),
    "NO_RESOURCES": (22, PHONE),
    "CANCELLED": (23, PHONE),
    "REQUEST_NOT_SUPPORTED": (24, PHONE),
    "NO_BLUETOOTH_SERVICE": (25, PHONE),
    "INVALID_BLUETOOTH_ADDRESS": (26, PHONE),
    "BLUETOOTH_DISCONNECTED": (27, PHONE),
    # The user refused (or was asked too often about) a premium short code or a burst of SMS.
    "UNEXPECTED_EVENT_STOP_SENDING": (28, PHONE),
    "SMS_BLOCKED_DURING_EMERGENCY": (29, PHONE),
    "SMS_SEND_RETRY_FAILED": (30, PHONE),
    "REMOTE_EXCEPTION": (31, PHONE),
    "NO_DEFAULT_SMS_APP": (32, PHONE),
    "USER_NOT_ALLOWED": (33, PHONE),
    "RIL_RADIO_NOT_AVAILABLE": (100, PHONE),
    "RIL_SMS_SEND_FAIL_RETRY": (101, PHONE),
    "RIL_NETWORK_REJECT": (102, PHONE),
    "RIL_INVALID_STATE": (103, PHONE),
    "RIL_INVALID_ARGUMENTS": (104, RECIPIENT),
    "RIL_NO_MEMORY": (105, PHONE),
    "RIL_REQUEST_RATE_LIMITED": (106, PHONE),
    "RIL_INVALID_SMS_FORMAT": (107, RECIPIENT),
    "RIL_SYSTEM_ERR": (108, PHONE),
    "RIL_ENCODING_ERR": (109, RECIPIENT),
    "RIL_INVALID_SMSC_ADDRESS": (110, PHONE),
    "RIL_MODEM_ERR": (111, PHONE),
    "RIL_NETWORK_ERR": (112, PHONE),
    "RIL_INTERNAL_ERR": (113, PHONE),
    "RIL_REQUEST_NOT_SUPPORTED": (114, PHONE),
    "RIL_INVALID_MODEM_STATE": (115, PHONE),
    "RIL_NETWORK_NOT_READY": (116, PHONE),
    "RIL_OPERATION_NOT_ALLOWED": (117, PHONE),
    "RIL_NO_RESOURCES": (118, PHONE),
    "RIL_CANCELLED": (119, PHONE),
    "RIL_SIM_ABSENT": (120, PHONE),
    "RIL_SIMULTANEOUS_SMS_AND_CALL_NOT_ALLOWED": (121, PHONE),
    "RIL_ACCESS_BARRED": (122, PHONE),
    "RIL_BLOCKED_DUE_TO_CALL": (123, PHONE),
    "RIL_GENERIC_ERROR": (124, PHONE),
    "RIL_INVALID_RESPONSE": (125, PHONE),
    "RIL_SIM_PIN2": (126, PHONE),
    "RIL_SIM_PUK2": (127, PHONE),
    "RIL_SUBSCRIPTION_NOT_AVAILABLE": (128, PHONE),
    "RIL_SIM_ERROR": (129, PHONE),
    "RIL_INVALID_SIM_STATE": (130, PHONE),
    "RIL_SIM_BUSY": (132, PHONE),
    "RIL_SIM_FULL": (133, PHONE),
    "RIL_NO_SUBSCRIPTION": (134, PHONE),
    "RIL_NO_NETWORK_FOUND": (135, PHONE),
    "RIL_DEVICE_IN_USE": (136, PHONE),
    "RIL_ABORTED": (137, PHONE),
}
_BY_CODE: dict[int, ErrorClass] = {code: kind for code, kind in ANDROID_RESULTS.values()}

# Over for every phone, checked first: a delivery report (the SMS left the phone:
# SMSGate's "Delivery result from SC …", "Delivery result: 1" — not RADIO_OFF), SMSGate's
# "TTL expired", and our "Cancelled on the phone".
_OVER = re.compile(r"DELIVERY_RESULT|TTL_EXPIRED|CANCELLED_ON_THE_PHONE")
# A Result constant's name: `RESULT_` and the name, up to the description that may follow.
_RESULT_NAME = re.compile(r"RESULT_((?:ERROR_|RIL_)?[A-Z0-9]+(?:_[A-Z0-9]+)*)")
_KNOWN_NAMES = sorted(ANDROID_RESULTS, key=len, reverse=True)
# The number is wrong: SMSGate's "Invalid phone number" (libphonenumber), Android's
# "Invalid destinationAddress", libphonenumber's parse errors, network causes, carriers' words.
_RECIPIENT_WORDS = re.compile(
    r"INVALID_(PHONE_)?(NUMBER|DESTINATION|RECIPIENT)|NOT_A_NUMBER|INVALID_COUNTRY_CODE|TOO_SHORT_NSN"
    r"|TOO_SHORT_AFTER_IDD|UNKNOWN_SUBSCRIBER|UNALLOCATED_NUMBER|UNIDENTIFIED_SUBSCRIBER"
    r"|SHORT_CODE_(NOT|NEVER)_ALLOWED|FDN_CHECK"
)
# A bare SmsManager result code: "2", "error 2", "code: 2", "resultCode=2".
_BARE_CODE = re.compile(r"^(?:(?:RESULT|ERROR|RESULTCODE|RESULT_CODE|ERROR_CODE|CODE)_?)?(\d{1,3})$")
_PHONE_WORDS = re.compile(
    r"RADIO_(OFF|NOT_AVAILABLE)|AIRPLANE|FLIGHT_MODE|NO_SERVICE|OUT_OF_SERVICE|NO_SIGNAL|NO_NETWORK"
    r"|NO_SIM|SIM_ABSENT|SIM_\d_NOT_FOUND|SIM_NOT_(FOUND|READY)|SIM_LOCKED|PIN_REQUIRED|PUK_REQUIRED"
    r"|SIM_SELECTION|PERMISSION|LIMIT_EXCEEDED|RATE_LIMITED|GENERIC_FAILURE|NULL_PDU|MODEM"
)


def _normalise(error: str) -> str:
    """Upper case, with each run of spaces, dashes, underscores, `:` and `=` one `_`."""
    return re.sub(r"[\s\-_:=]+", "_", error.strip().upper()).strip("_")


def _named_result(text: str) -> str | None:
    """The first Result constant the normalised text names, as a key of ANDROID_RESULTS."""
    for match in _RESULT_NAME.finditer(text):
        # "SEND_RESULT_RESULT_ERROR_…" (SMSGate's "Send result: RESULT_…") reads as one name.
        name = re.sub(r"^(RESULT_)+", "", match.group(1))
        # The longest known name it starts with ("ERROR_RADIO_OFF_(FAILED_BECAUSE…").
        for known in _KNOWN_NAMES:
            if name == known or name.startswith(known + "_"):
                return known
    return None


def classify(error: str) -> ErrorClass:
    """The class of a `failed` report's error text (see the module docstring)."""
    text = _normalise(error)
    if not text:
        return UNKNOWN
    if _OVER.search(text):
        return RECIPIENT
    named = _named_result(text)
    if named is not None:
        return ANDROID_RESULTS[named][1]
    if _RECIPIENT_WORDS.search(text):
        return RECIPIENT
    bare = _BARE_CODE.match(text)
    if bare is not None:
        return _BY_CODE.get(int(bare.group(1)), UNKNOWN)
    if _PHONE_WORDS.search(text):
        return PHONE
    return UNKNOWN


def android_code(error: str) -> int | None:
    """The SmsManager result code the text names, by constant name or as a bare number."""
    text = _normalise(error)
    named = _named_result(text)
    if named is not None:
        return ANDROID_RESULTS[named][0]
    bare = _BARE_CODE.match(text)
    return int(bare.group(1)) if bare is not None else None


def fails_over(error_class: ErrorClass) -> bool:
    """Whether a message that failed with this class is offered to the list's other phones."""
    return error_class is not RECIPIENT

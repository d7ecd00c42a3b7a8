"""messaging/lib/send_errors.py: whose fault a failed send was, from the phone's error text."""

from __future__ import annotations

import pytest

from messaging.lib.send_errors import ANDROID_RESULTS, PHONE, RECIPIENT, UNKNOWN, android_code, classify, fails_over

# The SMSGate app's sent-intent failures read "Send result: " + its description of the
# result code (MessagesService.resultToErrorMessage, android-sms-gateway 0cdc5d8), e.g.:
SMSGATE_PHONE_SIDE = [
    "Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)",
    "Send result: RESULT_ERROR_RADIO_OFF (Failed because radio was explicitly turned off)",
    "Send result: RESULT_ERROR_NULL_PDU (Failed because no PDU provided)",
    "Send result: RESULT_ERROR_NO_SERVICE (Failed because service is currently unavailable)",
    "Send result: RESULT_ERROR_LIMIT_EXCEEDED (Failed because we reached the sending queue limit)",
    "Send result: RESULT_RADIO_NOT_AVAILABLE (Failed because the radio was not available)",
    "Send result: RESULT_NETWORK_REJECT (Failed because of network rejection)",
    "Send result: RESULT_MODEM_ERROR (Failed because of a modem error)",
    "Send result: RESULT_INVALID_SMSC_ADDRESS (Failed because of an invalid SMSC address)",
    "Send result: RESULT_RIL_REQUEST_RATE_LIMITED (The radio denied the operation due to overly-frequent requests)",
    "Send result: RESULT_RIL_SIM_ABSENT (The radio failed to set the location where the CDMA subscription can be"
    " retrieved because the SIM or RUIM is absent)",
    "Send result: RESULT_RIL_ACCESS_BARRED (Access is barred)",
    "Send result: RESULT_RIL_GENERIC_ERROR (A RIL error occurred during the SMS send)",
    # Before the radio: no such SIM slot, or no permission to pick one.
    "Can't send message: SIM 2 not found",
    "Can't send message: SIM selection requires READ_PHONE_STATE permission",
]
SMSGATE_RECIPIENT_SIDE = [
    "Send result: RESULT_ERROR_FDN_CHECK_FAILURE (Failed because FDN is enabled)",
    "Send result: RESULT_ERROR_SHORT_CODE_NOT_ALLOWED (Failed because user denied the sending of this short code)",
    "Send result: RESULT_ERROR_SHORT_CODE_NEVER_ALLOWED (Failed because the user has denied this app ever send"
    " premium short codes)",
    "Send result: RESULT_INVALID_SMS_FORMAT (Failed because the SMS format is not valid)",
    "Send result: RESULT_ENCODING_ERROR (Failed because of an encoding error)",
    "sendSMS: Invalid phone number",
    "sendSMS: Invalid phone number type",
    "sendSMS: Invalid destinationAddress",
    "sendSMS: Error type: NOT_A_NUMBER. The string supplied did not seem to be a phone number.",
    # The message is over for every phone: its TTL passed, or it left the phone already.
    "TTL expired",
    "Delivery result: 2",
    "Delivery result from SC +393359609600: 64",
    "Cancelled on the phone",
]


@pytest.mark.parametrize("error", SMSGATE_PHONE_SIDE)
def test_it_reads_the_smsgate_app_s_phone_side_failures_as_phone_side(error):
    assert classify(error) == PHONE


@pytest.mark.parametrize("error", SMSGATE_RECIPIENT_SIDE)
def test_it_reads_the_smsgate_app_s_recipient_side_failures_as_recipient_side(error):
    assert classify(error) == RECIPIENT


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("RESULT_ERROR_RADIO_OFF", PHONE),
        ("RESULT_ERROR_NO_SERVICE", PHONE),
        ("RESULT_ERROR_LIMIT_EXCEEDED", PHONE),
        ("RESULT_ERROR_NULL_PDU", PHONE),
        ("RESULT_ERROR_GENERIC_FAILURE", PHONE),
        ("NO_SIM", PHONE),
        ("NO_SIM (SIM state: absent)", PHONE),
        ("RESULT_ERROR_RADIO_OFF: airplane mode", PHONE),
        ("radio off", PHONE),
        ("no service", PHONE),
        ("RESULT_ERROR_SHORT_CODE_NOT_ALLOWED", RECIPIENT),
        ("RESULT_ERROR_SHORT_CODE_NEVER_ALLOWED", RECIPIENT),
        ("RESULT_ERROR_FDN_CHECK_FAILURE", RECIPIENT),
        ("INVALID_DESTINATION_ADDRESS", RECIPIENT),
        ("RESULT_INVALID_DESTINATION_ADDRESS", RECIPIENT),
        ("invalid number", RECIPIENT),
        ("Invalid recipient", RECIPIENT),
    ],
)
def test_it_reads_the_protocol_s_error_values(error, expected):
    assert classify(error) == expected


NUMERIC_CODES = [("1", PHONE), ("2", PHONE), ("3", PHONE), ("4", PHONE), ("5", PHONE), ("6", RECIPIENT)]
NUMERIC_CODES += [("7", RECIPIENT), ("8", RECIPIENT), ("error 2", PHONE), ("code: 4", PHONE), ("120", PHONE)]
NUMERIC_CODES += [("resultCode=8", RECIPIENT)]


@pytest.mark.parametrize(("code", "expected"), NUMERIC_CODES)
def test_it_reads_smsmanager_s_numeric_result_codes(code, expected):
    assert classify(code) == expected


@pytest.mark.parametrize(
    "error", ["", "   ", "boom", "Send result: Unknown error code: 999.", "Simulated failure", "42"]
)
def test_text_naming_no_known_cause_is_unknown_and_fails_over(error):
    assert classify(error) == UNKNOWN
    assert fails_over(classify(error))


def test_only_recipient_side_errors_stay_put():
    assert fails_over(PHONE) and fails_over(UNKNOWN) and not fails_over(RECIPIENT)


def test_every_android_result_has_one_number_and_a_class():
    numbers = [number for number, _kind in ANDROID_RESULTS.values()]
    assert len(numbers) == len(set(numbers))
    for name, (number, kind) in ANDROID_RESULTS.items():
        assert classify(f"RESULT_{name}") == kind, name
        assert classify(str(number)) == kind, name
        assert android_code(f"Send result: RESULT_{name} (description)") == number


def test_a_result_name_beats_the_words_of_its_description():
    # "SMSC address was invalid" is not an invalid recipient number.
    assert classify("Send result: RESULT_RIL_INVALID_SMSC_ADDRESS (The specified SMSC address was invalid)") == PHONE

"""GenioSms's Perl IPN receiver, run as the CGI script it is, against real callbacks.

`clients/ipn_receiver.pl` does what GenioSms's published `ipn.pl` does (CGI.pm reads the
ten form fields and prints them). It runs under Python's CGI server; a phone reports a
message sent and delivered, the worker's delivery step sends the GenioSms-format
callbacks, and the delivery log keeps what the script printed for each.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ipn import delivery
from ipn import services as ipn_services
from messaging.services import callbacks, dispatch
from tests import factories
from tests.live import free_port, stop_process, wait_for

CLIENTS = Path(__file__).resolve().parent / "clients"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def perl_cgi():
    """The receiver as `cgi-bin/ipn.pl` of Python's CGI server; yields its URL."""
    if shutil.which("perl") is None or subprocess.run(["perl", "-MCGI", "-e1"], capture_output=True).returncode:
        pytest.skip("perl with CGI.pm is not installed (apt-get install -y libcgi-pm-perl)")
    # Run as root, the CGI server drops to `nobody` before running a script: the folder
    # must be readable by everyone (pytest's tmp_path is not).
    with tempfile.TemporaryDirectory() as site:
        Path(site).chmod(0o755)
        cgi_bin = Path(site) / "cgi-bin"
        cgi_bin.mkdir(mode=0o755)
        shutil.copy(CLIENTS / "ipn_receiver.pl", cgi_bin / "ipn.pl")
        (cgi_bin / "ipn.pl").chmod(0o755)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--cgi", "--bind", "127.0.0.1", str(port)],
            cwd=site,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: _listening(port), timeout=10, what="the CGI server")
            yield f"http://127.0.0.1:{port}/cgi-bin/ipn.pl"
        finally:
            stop_process(server)


def test_the_perl_cgi_receiver_reads_every_field_of_sent_and_delivery(db, perl_cgi, settings):
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    url = perl_cgi
    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account, name="Shop", pin="025719")
    ipn_services.update_endpoint(account=account, url=url, enabled=True, format="geniosms")
    phone, _token = factories.make_enrolled_device(phone_list=phone_list)
    phone.phone_number = "+393330000777"
    phone.save(update_fields=["phone_number"])
    message = factories.make_message(phone_list=phone_list, text="Ciao è tutto ok 👋", ref="order 7")
    assert dispatch.claim_message(device=phone, message_id=message.public_id)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    dispatch.report_message(device=phone, message_id=message.public_id, status="delivered")
    while delivery.deliver_one_due_event():
        pass
    common = (
        f"id_smsout={message.public_id} request_code={callbacks.request_code(message.public_id)} pin=025719"
        " custom=order 7"
    )
    tail = "to=+393331234567 from=+393330000777 msg=Ciao è tutto ok 👋\n"
    answers = message.ipn_events.order_by("id").values_list(
        "type", "attempts_log__status_code", "attempts_log__response_body"
    )
    assert list(answers) == [
        ("message.sent", 200, f"status=RESULT_OK status_code=-1 {common} ipn_type=SENT {tail}"),
        ("message.delivered", 200, f"status=RESULT_OK status_code=-1 {common} ipn_type=DELIVERY {tail}"),
    ]

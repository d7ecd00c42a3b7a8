"""Honest setup for a real phone on a list's page: the Termux line that downloads and runs
the reference agent from this server (and, run from a directory with no checkout, really
joins the list), the SMSGate app's settings, and a warning with what to set when the
server's address is this machine's own."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys

import httpx
import pytest
from django.test import override_settings
from django.urls import reverse

from devices.lib import phone_setup
from devices.models import Device
from messaging.models import Message
from tests import factories
from tests.live import daphne_server, live_server_url, stop_process, wait_for  # noqa: F401 - fixtures


def list_page(client, phone_list, host: str = "testserver") -> str:
    return client.get(reverse("list", args=[phone_list.token]), HTTP_HOST=host).content.decode()


def found(pattern: str, page: str) -> str:
    match = re.search(pattern, page, re.S)
    assert match, pattern
    return html.unescape(match.group(1))


def termux_command(page: str) -> str:
    return found(r'<code id="termux-command">(.*?)</code>', page)


@override_settings(SITE_URL="https://sms.example.com", ALLOWED_HOSTS=["testserver", "sms.example.com"])
def test_the_list_page_gives_the_termux_line_and_the_smsgate_settings_with_this_servers_address(
    alice_list, alice_client
):
    page = list_page(alice_client, alice_list)
    command = termux_command(page)
    assert command == phone_setup.termux_command(base_url="https://sms.example.com", pin=alice_list.pin)
    assert "curl -fsSLo phonefleet-agent.pyz https://sms.example.com/agent.pyz" in command
    assert f"--server https://sms.example.com --pin {alice_list.pin} --backend termux" in command
    assert 'id="mobile-api-url">https://sms.example.com/api/mobile/v1<' in page
    assert "SSE only" in page
    assert 'id="termux-qr"' in page and "<svg" in page
    assert 'id="unreachable"' not in page and 'id="smsgate-https"' not in page


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"])
def test_a_loopback_address_is_called_unreachable_with_what_to_set(alice_list, alice_client, host):
    page = list_page(alice_client, alice_list, host=host)
    assert 'id="unreachable"' in page and "Phones cannot reach this server" in page
    warning = found(r'<div class="warning" id="unreachable">(.*?)</div>', page)
    assert "HOST=0.0.0.0 SITE_URL=http://" in warning and ":8000 ALLOWED_HOSTS=" in warning
    assert re.search(r"SECRET_KEY=\S{50,} make run", warning)
    assert 'id="termux-qr"' not in page  # a QR code of an address no phone can open would lie
    assert 'id="smsgate-https"' in page


def test_a_lan_address_is_reachable(alice_list, alice_client):
    with override_settings(ALLOWED_HOSTS=["192.168.1.10"]):
        page = list_page(alice_client, alice_list, host="192.168.1.10:8000")
    assert 'id="unreachable"' not in page
    assert "--server http://192.168.1.10:8000 --pin" in termux_command(page)


def test_no_page_names_an_app_that_does_not_exist(alice_world, alice_client):
    from tests.panel.test_pages import page_urls

    for url in page_urls(alice_world):
        assert "Phonefleet app" not in alice_client.get(url).content.decode(), url


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_downloaded_agent_runs_alone_and_joins_the_list(tmp_path, live_server_url, alice_list):  # noqa: F811
    answer = httpx.get(f"{live_server_url}/agent.pyz")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    agent = tmp_path / phone_setup.AGENT_FILE
    agent.write_bytes(answer.content)
    # Run as a phone would: from a directory with no checkout, and no PYTHONPATH to one.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    command = [sys.executable, str(agent), "--server", live_server_url, "--pin", alice_list.pin]
    command += ["--name", "Downloaded agent", "--backend", "simulate", "--delivery-delay", "0"]
    command += ["--token-file", str(tmp_path / "phone.json")]
    with (tmp_path / "agent.log").open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        online = Device.objects.filter(phone_list=alice_list, name="Downloaded agent", is_connected=True)
        wait_for(online.exists, timeout=30, what="the downloaded agent online")
        message = factories.make_message(phone_list=alice_list)
        delivered = Message.objects.filter(pk=message.pk, status=Message.Status.DELIVERED)
        wait_for(delivered.exists, timeout=30, what="the message delivered by the downloaded agent")
    finally:
        stop_process(process)
    assert process.returncode == 0, (tmp_path / "agent.log").read_text()

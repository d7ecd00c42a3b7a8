"""The panel's cast: Alice with one of everything, signed in; Bob signed in with nothing.
And the live server and Debian's Chromium that the browser tests drive."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from accounts.lib import tokens
from ipn.models import IpnAttempt, IpnEvent
from messaging.models import InboundSms
from tests import factories


@pytest.fixture
def alice_world(alice, alice_list, alice_key):
    """Every kind of object Alice can see in the panel, by the id the panel uses."""
    device = factories.make_device(phone_list=alice_list, name="Alice's Pixel", online=True)
    message = factories.make_message(phone_list=alice_list, text="Alice's secret text")
    inbound = InboundSms.objects.create(
        account=alice,
        phone_list=alice_list,
        device=device,
        public_id=tokens.public_id("sms"),
        sender="+393330000099",
        text="Alice's inbox text",
        received_at=timezone.now(),
        fingerprint="f1",
    )
    event = IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account=alice,
        type="message.sent",
        message=message,
        body='{"type":"message.sent"}',
        status=IpnEvent.Status.DELIVERED,
        attempts=1,
    )
    IpnAttempt.objects.create(
        event=event, url="https://alice.example/ipn", status_code=200, outcome=IpnAttempt.Outcome.SUCCESS
    )
    return {
        "account": alice,
        "list": alice_list,
        "key": alice_key[0],
        "device": device,
        "message": message,
        "inbound": inbound,
        "event": event,
    }


def signed_in(account) -> Client:
    client = Client()
    client.force_login(account.users.get())
    return client


@pytest.fixture
def alice_client(alice):
    return signed_in(alice)


@pytest.fixture
def bob_client(bob):
    return signed_in(bob)


@pytest.fixture(scope="session")
def live_phonefleet(tmp_path_factory):
    """A real server (Daphne, embedded worker, its own SQLite) shared by the live tests."""
    from tests.panel import live

    server = live.start(tmp_path_factory.mktemp("live"))
    yield server
    live.stop(server)


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser); the live server's
    public name resolves to 127.0.0.1 in it."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    from tests.panel.live import PUBLIC_NAME

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--host-resolver-rules=MAP {PUBLIC_NAME} 127.0.0.1",
            ],
        )
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

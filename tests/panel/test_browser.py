"""The panel in a real browser (Debian's Chromium through Playwright) against a live server:
sign in, create a key, open CODE on the send row, run the virtual phone through sent and
delivered, and watch the message's status change live on the messages page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

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
            ],
        )
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_newcomer_sees_the_whole_flow_live(browser, live_phonefleet):
    base, account = live_phonefleet.url, live_phonefleet.account
    context = browser.new_context(base_url=base, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()

    # Sign in.
    page.goto("/login/")
    shot(page, "01-sign-in")
    page.fill("#id_username", account["email"])
    page.fill("#id_password", account["password"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    shot(page, "02-dashboard")

    # Create a key: its secret is shown once, with examples that carry it.
    page.goto("/keys/")
    page.fill("#id_name", "Browser test API")
    page.select_option("#id_default_list", label="Default")
    page.click("#create-key button[type=submit]")
    secret = page.locator("#new-key-secret").inner_text()
    assert secret.startswith("pf_live_")
    assert secret in page.locator(".code-examples pre").first.inner_text()
    shot(page, "03-key-created")

    # The developers page: CODE on the send row opens ready-to-run examples.
    page.goto("/developers/")
    page.click("#op-send button.code")
    dialog = page.locator("#code-dialog")
    dialog.locator("[data-lang-panel=curl] pre").wait_for()
    assert account["list"] in dialog.locator("[data-lang-panel=curl] pre").inner_text()
    dialog.locator("[data-lang-tab=python]").click()
    assert "urllib.request" in dialog.locator("[data-lang-panel=python] pre").inner_text()
    shot(page, "04-developers-code")
    dialog.locator("[data-close]").click()

    # The list's page links to the virtual phone with its PIN filled in.
    page.goto("/lists/")
    page.click(f"text={'Default'}")
    shot(page, "05-list")
    phone_page = context.new_page()
    phone_page.goto(page.locator("#phone-link").get_attribute("href"))
    assert phone_page.input_value("#pin") == account["pin"]
    phone_page.fill("#phone-name", "Browser phone")
    phone_page.click("#join")
    phone_page.locator("#conn-text", has_text="Online").wait_for()

    # The messages page is open and stays open (no reload) while things happen.
    page.goto("/messages/")
    page.evaluate("window.__noReload = true")

    answer = httpx.post(
        f"{base}/api/v1/send",
        data={"to": "+393331112222", "msg": "Hello from the browser test"},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()
    assert answer["response"] == "200", answer
    message_id = answer["message_id"]
    assert any(r["device_name"] == "Browser phone" for r in answer["records"]), answer

    row = page.locator(f"#row-{message_id}")
    row.wait_for()  # appeared without a reload
    offer = phone_page.locator(f"#offer-{message_id}")
    offer.locator("[data-action=claim]").click()
    offer.locator("[data-action=sent]").click()
    page.wait_for_selector(f"#row-{message_id}[data-status=sent]")
    offer.locator("[data-action=delivered]").click()
    page.wait_for_selector(f"#row-{message_id}[data-status=delivered]")
    assert page.evaluate("window.__noReload") is True
    shot(page, "06-messages-live")
    shot(phone_page, "07-virtual-phone")

    # The message's page: its timeline and the phone that sent it.
    page.goto(f"/messages/{message_id}/")
    assert "Browser phone" in page.locator("#message-phone").inner_text()
    timeline = page.locator(".timeline").inner_text()
    assert re.search(r"Assigned.*Sent.*Delivered", timeline, re.S), timeline
    shot(page, "08-message-detail")

    # Presence is live too: the phones page shows it online, then offline once it leaves.
    page.goto("/phones/")
    page.wait_for_selector("tr[data-online=true]")
    shot(page, "09-phones")
    phone_page.close()

    for path, name in [
        ("/", "10-dashboard-after"),
        ("/ipn/", "11-ipn"),
        ("/developers/guide/", "12-api-guide"),
        ("/credit/", "13-credit"),
        ("/inbox/", "14-inbox"),
    ]:
        page.goto(path)
        shot(page, name)
    context.close()

"""A newcomer's first minutes, in Debian's Chromium at a laptop's width (1366 px) and a
phone's (390 px): sign in, open the virtual phone and leave Automatic as it is, send an SMS
from the dashboard, and watch it reach `delivered` on the message's page without a reload.
Then every page: none is wider than the window, none logs a console error; at phone width
the menu folds, tables keep their status column in view and the CODE dialog fits. And a
phone's camera (zbarimg) reads the list page's QR code as the Termux line shown beside it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.panel.conftest import TIMEOUT_MS, shot
from tests.panel.live import PUBLIC_NAME

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = {"laptop": 1366, "phone": 390}
# Every page a signed-in customer can open from the menu, and the pages behind them.
PAGES = [
    "/",
    "/messages/",
    "/inbox/",
    "/verifications/",
    "/lists/",
    "/lists/{list}/",
    "/phones/",
    "/phone/",
    "/developers/",
    "/keys/",
    "/ipn/",
    "/developers/guide/",
    "/credit/",
    "/verifications/",
]


def wider_than_the_window(page) -> int:
    """How many pixels the page scrolls sideways (0 when it fits)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def sign_in(page, account: dict) -> None:
    page.goto("/login/")
    page.fill("#id_username", account["email"])
    page.fill("#id_password", account["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/")


@dataclass
class Newcomer:
    page: Any
    account: dict
    width: int
    name: str
    # Console errors and uncaught exceptions of every page of the window.
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def newcomer(browser, live_phonefleet, request):
    """A fresh account signed in, in a browser window of the test's width."""
    width = WIDTHS[request.param]
    account = live_phonefleet.new_account(f"newcomer-{request.param}@example.com")
    context = browser.new_context(base_url=live_phonefleet.url, viewport={"width": width, "height": 844})
    context.set_default_timeout(TIMEOUT_MS)
    # Live parts poll every 2 s; a quicker beat keeps this test short.
    # (about:blank, where each new page starts, has no storage.)
    context.add_init_script("try { localStorage.setItem('phonefleet.live-every', '250') } catch (e) {}")
    found = Newcomer(None, account, width, request.param)

    def watch(page) -> None:
        page.on("console", lambda m: found.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: found.errors.append(f"{page.url}: {exc}"))

    context.on("page", watch)
    found.page = context.new_page()
    sign_in(found.page, account)
    yield found
    context.close()


@pytest.mark.parametrize("newcomer", list(WIDTHS), indirect=True)
def test_a_newcomer_sends_from_the_panel_to_the_virtual_phone_and_sees_it_delivered(newcomer):
    page, account, width, name = newcomer.page, newcomer.account, newcomer.width, newcomer.name

    # The virtual phone: the list's PIN is filled in and Automatic is on by default.
    phone = page.context.new_page()
    phone.goto("/phone/")
    assert phone.input_value("#pin") == account["pin"]
    phone.click("#join")
    phone.locator("#conn-text", has_text="Online").wait_for()
    assert phone.is_checked("#auto")

    # The dashboard's form: parts and cost as the text is typed, and the phone online.
    page.goto("/")
    page.locator("#send-online", has_text="Virtual phone").wait_for()
    page.fill("#id_to", "+393331112222")
    page.fill("#id_msg", "x" * 161)
    page.locator("#send-parts[data-parts='2']", has_text="costs 2 credits").wait_for()
    page.fill("#id_msg", "Hello from the panel")
    page.locator("#send-parts[data-parts='1']").wait_for()
    shot(page, f"first-{name}-01-send-form")
    page.click("#send-submit")
    page.wait_for_url("**/messages/msg_*/")
    message_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.evaluate("window.__noReload = true")

    # The message's page follows it to `delivered` by itself; the badge in the header too.
    page.locator("#message-status", has_text="Delivered").wait_for()
    assert page.evaluate("window.__noReload") is True
    page.locator("#credit-badge", has_text="499 credits").wait_for()
    assert phone.locator(f"#offer-{message_id}").get_attribute("data-status") == "delivered"
    shot(page, f"first-{name}-02-delivered")

    # A test SMS from the virtual phone itself goes the same way.
    phone.click("#test-sms")
    test_id = phone.locator("#test-sms-result a").inner_text()
    phone.locator(f"#offer-{test_id}[data-status=delivered]").wait_for()
    shot(phone, f"first-{name}-03-virtual-phone")

    # Reloading the phone's page reconnects the same phone: the list does not fill up.
    phone_id = phone.inner_text("#phone-ids").split(" ")[0]
    phone.reload()
    phone.locator("#conn-text", has_text="Online").wait_for()
    assert phone.inner_text("#phone-ids").split(" ")[0] == phone_id
    page.goto("/phones/")
    assert page.locator("table.phones tbody tr").count() == 1

    # Every page fits the window and says nothing in the console.
    for path in PAGES:
        page.goto(path.format(list=account["list"]))
        assert wider_than_the_window(page) == 0, f"{path} scrolls sideways at {width} px"
        if width < 900:
            assert page.locator("#nav").is_hidden(), f"{path}: the menu is not folded"
        shot(page, f"first-{name}-page{path.replace('/', '_').replace('{list}', 'list')}")

    if width < 900:
        # The folded menu opens and closes with its button.
        page.click("#menu-button")
        page.locator("#nav a", has_text="Messages").wait_for()
        page.click("#menu-button")
        assert page.locator("#nav").is_hidden()
        # The messages table scrolls inside its card, with the status column held in view.
        page.goto("/messages/")
        status = page.locator(f"#row-{message_id} td.status").bounding_box()
        assert status is not None and status["x"] >= 0 and status["x"] + status["width"] <= width
        # The CODE dialog fits the window.
        page.goto("/developers/")
        page.click("#op-send button.code")
        page.locator("#code-dialog [data-lang-panel=curl] pre").wait_for()
        box = page.locator("#code-dialog").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert wider_than_the_window(page) == 0
        shot(page, f"first-{name}-04-code-dialog")

    assert newcomer.errors == []


def test_the_qr_code_is_the_termux_line_a_phone_reads(browser, live_phonefleet):
    """Reached by a name phones can resolve, the list page shows a QR code; a phone's camera
    (zbarimg, on a screenshot) reads exactly the Termux line printed beside it."""
    if shutil.which("zbarimg") is None:
        pytest.skip("zbarimg is not installed (apt-get install -y zbar-tools)")
    account = live_phonefleet.account
    port = live_phonefleet.url.rsplit(":", 1)[1]
    context = browser.new_context(base_url=f"http://{PUBLIC_NAME}:{port}", viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, account)
    page.goto(f"/lists/{account['list']}/")
    command = page.inner_text("#termux-command")
    assert f"--server http://{PUBLIC_NAME}:{port} --pin {account['pin']}" in command
    image = live_phonefleet.folder / "qr.png"
    page.locator("#termux-qr svg").screenshot(path=str(image))
    context.close()
    read = subprocess.run(["zbarimg", "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=30)
    assert read.stdout.rstrip("\n") == command


def test_a_card_whose_message_another_phone_took_says_so_and_offers_no_claim(browser, live_phonefleet):
    account = live_phonefleet.new_account("two-phones@example.com")
    phones = {}
    for name in ("Slow phone", "Quick phone"):
        # Two windows with storage of their own: two phones of the same list, both by hand.
        context = browser.new_context(base_url=live_phonefleet.url, viewport={"width": 1366, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        sign_in(page, account)
        page.goto("/phone/")
        page.fill("#phone-name", name)
        page.click("#join")
        page.locator("#conn-text", has_text="Online").wait_for()
        page.uncheck("#auto")
        phones[name] = page
    answer = httpx.post(
        f"{live_phonefleet.url}/api/v1/send",
        data={"to": "+393331114444", "msg": "Who takes it?"},
        headers={"Authorization": f"Bearer {account['api_key']}"},
    ).json()
    message_id = answer["message_id"]
    slow_card = phones["Slow phone"].locator(f"#offer-{message_id}")
    slow_card.locator("[data-action=claim]").wait_for()
    phones["Quick phone"].locator(f"#offer-{message_id} [data-action=claim]").click()
    phones["Quick phone"].locator(f"#offer-{message_id}[data-status=assigned]").wait_for()
    slow_card.locator(".status", has_text="taken by Quick phone").wait_for()
    assert slow_card.locator("[data-action=claim]").count() == 0
    for page in phones.values():
        page.context.close()


def test_the_browsers_phone_moves_to_another_list_and_leaves_nothing_behind(browser, live_phonefleet):
    account = live_phonefleet.new_account("moving-phone@example.com")
    context = browser.new_context(base_url=live_phonefleet.url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, account)
    page.goto("/phone/")
    page.click("#join")
    page.locator("#conn-text", has_text="Online").wait_for()

    page.goto("/lists/")
    page.fill("#id_name", "Second list")
    page.click("form button.primary")
    page.click("#phone-link")  # the virtual phone with the second list's PIN
    page.locator("#join-error", has_text="Joining replaces this browser's phone in “Default”").wait_for()
    page.click("#join")
    page.locator("#phone-title", has_text="Second list").wait_for()
    page.locator("#conn-text", has_text="Online").wait_for()

    page.goto("/phones/")
    rows = page.locator("table.phones tbody tr")
    assert rows.count() == 1 and "Second list" in rows.first.inner_text()

    # Leaving removes it too.
    page.goto("/phone/")
    page.locator("#conn-text", has_text="Online").wait_for()
    page.click("#forget")
    page.locator("#join").wait_for()
    page.goto("/phones/")
    assert page.locator("table.phones tbody tr[id^=phone-]").count() == 0
    context.close()

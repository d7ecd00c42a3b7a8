"""The Content-Security-Policy in Debian's Chromium: the main panel pages, the fragments
they load, the CODE dialog and the virtual phone's WebSocket run with no violation."""

from __future__ import annotations

import pytest

from tests.panel.conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = ["/", "/messages/", "/lists/{list}/", "/keys/", "/ipn/", "/developers/"]
# Collects every violation the page reports (the console says it too, as an error).
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_the_panel_runs_under_its_content_security_policy(browser, live_phonefleet):
    account = live_phonefleet.new_account("csp@example.com")
    context = browser.new_context(base_url=live_phonefleet.url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(WATCH)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

    def violations() -> list[str]:
        return [f"{page.url}: {v}" for v in page.evaluate("window.__csp")]

    response = page.goto("/login/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_username", account["email"])
    page.fill("#id_password", account["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    found = violations()
    for path in PAGES:
        page.goto(path.format(list=account["list"]))
        page.wait_for_load_state("networkidle")  # the live parts have loaded their fragments
        found += violations()
    # The CODE dialog's fragment, and the virtual phone's WebSocket (connect-src).
    page.click("#op-send button.code")
    page.locator("#code-dialog [data-lang-panel=curl] pre").wait_for()
    found += violations()
    page.goto("/phone/")
    page.click("#join")
    page.locator("#conn-text", has_text="Online").wait_for()
    found += violations()
    context.close()
    assert found == []
    assert errors == []

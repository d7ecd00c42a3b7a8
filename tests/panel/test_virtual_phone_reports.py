"""The virtual phone's reports in a real browser (Debian's Chromium through Playwright).

Its WebSocket runs through Playwright's WebSocket routing, which plays the network: while
"down", the frames the page sends are lost; then the connection is cut, as a dropped
mobile connection is. The page must keep its reports and send them again, in order, when
it reconnects, and the server must store and call back `sent` before `delivered`.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.panel.conftest import TIMEOUT_MS
from tests.panel.test_browser import Receiver, receiver, wait_until  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def sign_in(context, account: dict):
    page = context.new_page()
    page.goto("/login/")
    page.fill("#id_username", account["email"])
    page.fill("#id_password", account["password"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    return page


def test_reports_made_while_offline_are_sent_again_in_order_after_reconnecting(
    browser,
    live_phonefleet,
    receiver: Receiver,  # noqa: F811
):
    # An account of its own: the shared one's list may hold messages other tests queued,
    # which this phone (Automatic until unchecked) would claim and report too.
    base, account = live_phonefleet.url, live_phonefleet.new_account("train@example.com")
    auth = {"Authorization": f"Bearer {account['api_key']}"}
    ipn = httpx.put(f"{base}/api/v1/ipn", data={"url": receiver.url, "enabled": "true"}, headers=auth)
    assert ipn.status_code == 200, ipn.text
    receiver.secret = ipn.json()["secret"]
    context = browser.new_context(base_url=base)
    context.set_default_timeout(TIMEOUT_MS)
    page = sign_in(context, account)

    network = {"up": True}
    connections = []

    def play_the_network(ws):
        server = ws.connect_to_server()
        connections.append(ws)
        ws.on_message(lambda message: server.send(message) if network["up"] else None)

    page.route_web_socket(re.compile(r"/ws/"), play_the_network)
    page.goto(f"/phone/?pin={account['pin']}")
    page.fill("#phone-name", "Phone on a train")
    page.click("#join")
    page.locator("#conn-text", has_text="Online").wait_for()
    page.uncheck("#auto")  # this phone's user taps each step

    sent = httpx.post(f"{base}/api/v1/send", data={"to": "+393331114444", "msg": "Through a tunnel"}, headers=auth)
    message_id = sent.json()["message_id"]
    card = page.locator(f"#offer-{message_id}")
    card.locator("[data-action=claim]").click()
    page.wait_for_selector(f"#offer-{message_id}[data-status=assigned]")

    network["up"] = False  # into the tunnel: what the page sends now is lost
    card.locator("[data-action=sent]").click()
    card.locator("[data-action=delivered]").click()
    assert page.evaluate("JSON.parse(localStorage.getItem('phonefleet.virtual-phone.reports')).length") == 2
    status = httpx.get(f"{base}/api/v1/messages/{message_id}", headers=auth).json()["status"]
    assert status == "assigned"

    network["up"] = True
    connections[-1].close(code=1006, reason="connection lost")
    page.wait_for_selector(f"#offer-{message_id}[data-status=delivered]")
    assert len(connections) >= 2  # it reconnected
    assert page.evaluate("JSON.parse(localStorage.getItem('phonefleet.virtual-phone.reports')).length") == 0

    stored = httpx.get(f"{base}/api/v1/messages/{message_id}", headers=auth).json()
    assert stored["status"] == "delivered"
    assert [step["status"] for step in stored["timeline"]][-3:] == ["assigned", "sent", "delivered"]
    wait_until(lambda: len([c for c in receiver.calls if c[1]["data"]["message_id"] == message_id]) == 2, "callbacks")
    mine = [event for _id, event in receiver.calls if event["data"]["message_id"] == message_id]
    assert [event["type"] for event in mine] == ["message.sent", "message.delivered"]
    assert json.dumps(mine[0]["data"]["delivered_at"]) == "null"
    context.close()

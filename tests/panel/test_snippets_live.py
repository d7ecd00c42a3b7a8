"""The generated send examples, run for real against a live server: each queues a message."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import httpx
import pytest

from messaging.lib import snippets

pytestmark = pytest.mark.slow

RUNNERS = {
    "curl": (["bash"], "send.sh"),
    "python": ([sys.executable], "send.py"),
    "node": (["node"], "send.js"),
    "php": (["php"], "send.php"),
    "java": (["java"], "PhonefleetExample.java"),
    "ruby": (["ruby"], "send.rb"),
}


@pytest.mark.parametrize("lang", list(RUNNERS))
def test_the_send_example_queues_a_message(live_phonefleet, tmp_path, lang):
    command, filename = RUNNERS[lang]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    context = snippets.Context(
        base_url=live_phonefleet.url,
        list_token=live_phonefleet.account["list"],
        api_key=live_phonefleet.account["api_key"],
    )
    path = tmp_path / filename
    path.write_text(snippets.render(snippets.OPERATIONS_BY_SLUG["send"], lang, context))
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(r"msg_[A-Za-z0-9]+", result.stdout)
    assert found, result.stdout
    status = httpx.get(
        f"{live_phonefleet.url}/api/v1/messages/{found.group(0)}",
        headers={"Authorization": f"Bearer {live_phonefleet.account['api_key']}"},
    ).json()
    assert status["status"] == "queued" and status["to"] == "+393331234567", status


def test_the_geniosms_example_queues_a_message_too(live_phonefleet, tmp_path):
    context = snippets.Context(base_url=live_phonefleet.url, api_key=live_phonefleet.account["api_key"])
    path = tmp_path / "geniosms.py"
    path.write_text(snippets.render(snippets.OPERATIONS_BY_SLUG["geniosms"], "python", context))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert "'response': '200'" in result.stdout and re.search(r"msg_[A-Za-z0-9]+", result.stdout), result

"""Credentials stay out of the logs in the production layout: the servers, run as docs/deploy/ runs them, never write
an API key from a query string to their output."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests import factories
from tests.production.conftest import ROOT, api

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def unit_daphne_flags() -> tuple[str, ...]:
    """The Daphne options of docs/deploy/phonefleet-ws@.service, between the listening
    endpoint (the word with the port, `%i`) and the app."""
    unit = (ROOT / "docs" / "deploy" / "phonefleet-ws@.service").read_text()
    command = re.search(r"^ExecStart=(.*?config\.asgi:application)", unit, re.S | re.M)
    assert command is not None
    words = shlex.split(command.group(1).replace("\\\n", " "))
    port = next(n for n, word in enumerate(words) if "%i" in word)
    return tuple(words[port + 1 : -1])


def test_daphne_as_deployed_does_not_log_an_api_key_from_the_query_string(stack):
    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    flags = unit_daphne_flags()
    assert "--access-log" in flags
    deployed = stack.daphne("daphne-deployed", flags=flags)
    plain = stack.daphne("daphne-plain")  # the control: Daphne's default access log
    for server in (deployed, plain):
        status, _body, _ = api("GET", f"{server.url}/api/v1/balance?api_key={secret}")
        assert status == 200
    assert secret in plain.tail(100_000)  # the leak this setting prevents is real
    assert secret not in deployed.tail(100_000)


def test_gunicorn_as_deployed_keeps_no_access_log():
    config = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "docs/deploy/gunicorn.conf.py", "--print-config", "config.wsgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stderr
    assert re.search(r"^accesslog\s*=\s*None$", config.stdout, re.M), config.stdout

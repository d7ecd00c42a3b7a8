"""Schemathesis against the live API's own OpenAPI schema (/api/schema/), with a seeded
account's key, on gunicorn (the production server for `/api/`, docs/deploy.md): every
developer operation; no 5xx, and statuses, content types, headers and bodies as documented
(the envelope), in a bounded time.

Left out, on purpose:
- the phone-side routes (`/api/device/`, `/api/mobile/`): their wire formats are the
  phones', not the envelope; `test_phone_input_fuzz.py` fuzzes them for 5xx;
- the checks `positive_data_acceptance` / `negative_data_rejection`: the schema cannot say
  which strings are phone numbers, list tokens or public URLs, so "schema-valid but
  refused" is the API doing its job (a 400 envelope with code 5/6/7), not a bug.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from accounts.models import ApiKey
from tests import factories

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Test cases per operation and phase; the whole run stays well under two minutes.
MAX_EXAMPLES = "10"


def test_the_api_survives_schemathesis_with_no_server_error_and_every_answer_as_documented(stack, tmp_path):
    account = factories.make_account(credit=1_000_000)
    phone_list = factories.make_list(account=account)
    factories.make_enrolled_device(phone_list=phone_list)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=1_000_000)
    server = stack.gunicorn("gunicorn", IPN_ALLOW_PRIVATE_NETWORKS="false")
    report = tmp_path / "schemathesis.ndjson"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/api/schema/",
            "--url",
            server.url,
            "--header",
            f"Authorization: Bearer {secret}",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "20261125",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--exclude-path-regex",
            "^/api/(device|mobile)/",
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    events = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(events) > 10, "schemathesis made no requests"
    assert "0 failures" in run.stdout or "passed" in run.stdout, run.stdout[-3000:]
    assert server.alive()

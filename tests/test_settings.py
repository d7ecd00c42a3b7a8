"""The one rule for production (README, Configuration) and the sentences every command
prints instead of a traceback: manage.py, Daphne and gunicorn, run as a newcomer runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What a developer's shell might hold that these runs must not inherit.
INHERITED = ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in INHERITED}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )


def assert_one_sentence(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_a_developer_with_only_a_database_url_needs_no_secret_key(tmp_path):
    result = run("manage.py", "check", DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    assert result.returncode == 0, result.stderr


def test_a_public_host_makes_it_production_and_production_needs_a_secret_key():
    result = run("manage.py", "check", ALLOWED_HOSTS="sms.example.com")
    assert_one_sentence(result, "SECRET_KEY is not set", "ALLOWED_HOSTS names sms.example.com", "token_urlsafe")


def test_production_refuses_the_placeholder_of_the_example_environment():
    result = run("manage.py", "check", ALLOWED_HOSTS="sms.example.com", SECRET_KEY="CHANGE-ME-to-50-random-characters")
    assert_one_sentence(result, "SECRET_KEY is a placeholder")


def test_debug_is_not_production():
    result = run("manage.py", "check", ALLOWED_HOSTS="192.168.1.10", DEBUG="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "server",
    [
        ("-m", "daphne", "-p", "0", "config.asgi:application"),
        ("-m", "gunicorn", "-b", "127.0.0.1:0", "config.wsgi:application"),
    ],
    ids=["daphne", "gunicorn"],
)
def test_servers_stop_with_the_sentence(server):
    result = run(*server, timeout=120, ALLOWED_HOSTS="sms.example.com")
    assert_one_sentence(result, "Phonefleet is not configured: SECRET_KEY is not set")


def test_a_database_that_does_not_exist_is_named_with_how_to_create_it(postgres_only):
    from tests.live import database_url

    url = database_url().rsplit("/", 1)[0] + "/phonefleet_missing_db_test"
    result = run("manage.py", "migrate", DATABASE_URL=url)
    assert_one_sentence(result, "does not exist", "createdb", "phonefleet_missing_db_test")


def test_a_worker_heartbeat_limit_of_zero_is_refused_with_a_sentence():
    result = run("manage.py", "check", WORKER_HEARTBEAT_MAX_AGE="0")
    assert_one_sentence(result, "WORKER_HEARTBEAT_MAX_AGE must be a number of seconds above 0.")


def test_a_metrics_folder_that_cannot_be_written_is_named(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = run("manage.py", "check", PROMETHEUS_MULTIPROC_DIR=str(blocked / "metrics"))
    assert_one_sentence(
        result, f"PROMETHEUS_MULTIPROC_DIR={blocked / 'metrics'} is not a folder this process can write"
    )


def test_the_default_allowed_hosts_are_the_readmes(tmp_path):
    """Only this machine's names: a request for `testserver` (or any other Host) is refused,
    so nothing (a reset link) is ever built on it."""
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"^\| `ALLOWED_HOSTS` \| `([^`]*)` \|", readme, re.MULTILINE)
    assert row is not None
    documented = row.group(1)
    code = "from django.conf import settings; print(','.join(settings.ALLOWED_HOSTS))"
    result = run("manage.py", "shell", "-c", code, DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == documented
    assert "testserver" not in documented.split(",")

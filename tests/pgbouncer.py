"""PgBouncer in transaction mode between the tests and PostgreSQL.

Debian's `pgbouncer` (apt-get install -y pgbouncer), never the system service: each test
that needs one starts its own on a free port, with a config written to a temporary folder,
and stops it afterwards. It pools few server connections (POOL_SIZE) for many clients, so
consecutive transactions of one client really do land on different server connections.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection, connections

from tests.live import free_port, wait_for

POOL_SIZE = 4
# Debian installs it in /usr/sbin, which is not on every user's PATH.
PROGRAM = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")

CONFIG = """\
[databases]
* = host={host} port={port} user={user} {password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_reset_query =
"""


class PgBouncer:
    """One PgBouncer process in front of the test database's server; it can be killed and
    started again on the same port (the database "goes away" for whoever uses it)."""

    def __init__(self, *, pool_size: int = POOL_SIZE) -> None:
        db = connection.settings_dict
        self.database = db["NAME"]
        self.user = db.get("USER") or "postgres"
        self.password = db.get("PASSWORD") or ""
        self.port = free_port()
        # Readable by the user PgBouncer switches to (it refuses to run as root).
        self.folder = Path(tempfile.mkdtemp(prefix="pf-pgbouncer-"))
        self.folder.chmod(0o755)
        password = f"password={self.password}" if self.password else ""
        config = CONFIG.format(
            host=db.get("HOST") or "127.0.0.1",
            port=db.get("PORT") or 5432,
            user=self.user,
            password=password,
            listen_port=self.port,
            folder=self.folder,
            pool_size=pool_size,
        )
        (self.folder / "pgbouncer.ini").write_text(config)
        (self.folder / "users.txt").write_text(f'"{self.user}" ""\n')
        for path in self.folder.iterdir():
            path.chmod(0o644)
        self.log = self.folder / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self) -> str:
        """The test database through PgBouncer, as a DATABASE_URL."""
        password = f":{quote(self.password)}" if self.password else ""
        return f"postgres://{quote(self.user)}{password}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        command = [str(PROGRAM), *(["-u", "nobody"] if os.geteuid() == 0 else []), str(self.folder / "pgbouncer.ini")]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=15, what="PgBouncer to listen")

    def _answers(self) -> bool:
        try:
            self.admin("SHOW VERSION")
        except psycopg.OperationalError:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"PgBouncer exited:\n{self.log.read_text()}")
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: every client loses its connection at once."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # PgBouncer's immediate shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Rows of a command on PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`…)."""
        with (
            psycopg.connect(
                host="127.0.0.1", port=self.port, dbname="pgbouncer", user=self.user, autocommit=True, connect_timeout=2
            ) as admin,
            admin.cursor() as cursor,
        ):
            cursor.execute(command)  # no parameters: the console speaks the simple protocol only
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def transactions(self) -> int:
        """Transactions PgBouncer has passed to the test database so far."""
        return sum(int(row["total_xact_count"]) for row in self.admin("SHOW STATS") if row["database"] == self.database)

    @contextlib.contextmanager
    def route_new_connections(self) -> Iterator[None]:
        """Database connections opened from now on (the threads of a race) go through
        PgBouncer, with the settings `DATABASE_TRANSACTION_POOLING=true` gives; connections
        already open (the test's own) stay direct."""
        original = connections.settings["default"]
        connections.settings["default"] = {
            **original,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "OPTIONS": {**original["OPTIONS"], "prepare_threshold": None},
            "DISABLE_SERVER_SIDE_CURSORS": True,
        }
        try:
            yield
        finally:
            connections.settings["default"] = original


@pytest.fixture
def pgbouncer(postgres_only) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test database."""
    if PROGRAM is None:
        pytest.skip("needs PgBouncer: apt-get install -y pgbouncer (CI installs it)")
    with PgBouncer() as bouncer:
        yield bouncer


@pytest.fixture
def db_route(request) -> Iterator[PgBouncer | None]:
    """How the processes and threads a test starts reach PostgreSQL: directly (None), or
    through PgBouncer with `@pytest.mark.parametrize("db_route", ["pgbouncer"], indirect=True)`.
    Afterwards it checks that the traffic really went through PgBouncer."""
    if getattr(request, "param", "direct") == "direct":
        yield None
        return
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    with bouncer.route_new_connections():
        yield bouncer
    assert bouncer.transactions() > 0, "nothing went through PgBouncer"

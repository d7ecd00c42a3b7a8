"""Create (once) and print the demo account that `make run` starts with."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User
from devices.management.commands.createaccount import create_account_bundle

DEMO_EMAIL = "demo@phonefleet.local"


def demo_file() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo.json"


class Command(BaseCommand):
    help = "Create the demo account on first run (reused afterwards) and print its credentials."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", default="8000")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        path = demo_file()
        demo: dict[str, Any] | None = None
        if path.exists() and User.objects.filter(username=DEMO_EMAIL).exists():
            demo = json.loads(path.read_text())
        if demo is None:
            User.objects.filter(username=DEMO_EMAIL).delete()  # stale: credentials file lost
            demo = create_account_bundle(
                email=DEMO_EMAIL, password=secrets.token_urlsafe(9), credit=settings.DEMO_CREDIT, rate=None
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(demo, indent=2))
            path.chmod(0o600)
        if options["json"]:
            self.stdout.write(json.dumps(demo))
            return
        base = f"http://localhost:{options['port']}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "  Phonefleet demo account",
                    f"  Panel      {base}/   (login {demo['email']} / {demo['password']})",
                    f"  API key    {demo['api_key']}",
                    f"  List       {demo['list']}",
                    f"  PIN        {demo['pin']}",
                    *([f"  Mobile     {demo['mobile_token']}"] if demo.get("mobile_token") else []),
                    "",
                    "  Send a test SMS:",
                    f"  curl '{base}/api/v1/send' -d api_key={demo['api_key']} -d to=+393331234567 -d msg=Hello",
                    "  or sign in, open Virtual phone (it sends by itself) and use Send an SMS on the Dashboard.",
                    "",
                ]
            )
        )

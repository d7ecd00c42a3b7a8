#!/usr/bin/env python
"""Django's command-line utility for Phonefleet. A missing setting or an unreachable
database ends the command with one sentence saying what to set, not a traceback."""

import os
import sys


def _database_problem(error: Exception) -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "does not exist" in reason:
        user = f"-U {db['USER']} " if db.get("USER") else ""
        fix = f"create it (createdb -h {db.get('HOST') or 'localhost'} -p {db.get('PORT') or 5432} {user}{db['NAME']})"
        return f"The database of DATABASE_URL ({where}) does not exist: {fix}, or point DATABASE_URL at one that does."
    return f"Cannot use the database of DATABASE_URL ({where}): {reason}. Check DATABASE_URL and that the server runs."


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads the settings: a bad one is reported below)
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.exit(f"Phonefleet is not configured: {exc}")
    except OperationalError as exc:
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            raise
        sys.exit(_database_problem(exc))


if __name__ == "__main__":
    main()

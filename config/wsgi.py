"""WSGI entry point: the production HTTP API server (gunicorn) uses this."""

import gc
import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    django_application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # One sentence, not a traceback; status 3 is gunicorn's "worker failed to boot", on which
    # its master stops instead of starting new workers that would fail the same way.
    print(f"Phonefleet is not configured: {exc}", file=sys.stderr)
    sys.exit(3)

from django.urls import get_resolver

from accounts.lib.bodylimit import BodyLimitWSGI
from config.limits import body_limits

# A body over the limit gets 413 before it is read (docs/deploy.md, "Limits").
application = BodyLimitWSGI(django_application, body_limits())

# Load the views now rather than on the first request, then exempt everything loaded from
# the garbage collector's full collections (see config/asgi.py).
get_resolver().url_patterns  # noqa: B018
gc.freeze()

"""WSGI entry point: the production HTTP API server (gunicorn) uses this."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Load the views now rather than on the first request, then exempt everything loaded from
# the garbage collector's full collections (see config/asgi.py).
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018
gc.freeze()

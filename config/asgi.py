"""ASGI entry point: HTTP and the phones' WebSockets, served by Daphne."""

import contextlib
import gc
import os

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before the consumers (and their models) are imported.
try:
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:  # the server stops with the sentence, not a traceback
    raise SystemExit(f"Phonefleet is not configured: {exc}") from None

from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.urls import get_resolver

from accounts.lib.bodylimit import BodyLimitASGI, bound_daphne_requests
from config.limits import body_limits
from devices.lib import daphne_ws
from devices.routing import websocket_application

# A body over the limit gets 413 before it is read (docs/deploy.md, "Limits"): in Daphne's
# own requests as the bytes arrive, and around the application for any ASGI server.
bound_daphne_requests(body_limits())
# Phone handshakes over the accept rate get 503 + Retry-After before the upgrade, and a
# handshake Daphne times out is "busy", not 403 (devices/lib/daphne_ws.py).
daphne_ws.install()
# Daphne's WebSocket library (autobahn) builds the arguments of a debug line on every frame
# it sends, debug logging on or not, with click's colours when click is installed (about
# 8 µs a frame here, some 15-25 frames a message: docs/benchmarks.md). Plain text instead:
# the same words, without colours, at a quarter of the cost.
with contextlib.suppress(ImportError):
    import autobahn.util

    autobahn.util._HAS_CLICK = False
application = ProtocolTypeRouter(
    {
        "http": BodyLimitASGI(django_asgi_app, body_limits()),
        "websocket": websocket_application,
    }
)

# What is loaded by now lives as long as the process: freeze it, so the garbage collector
# stops scanning it on every full collection (one such collection paused the phones' event
# loop for 120 ms under load, docs/benchmarks.md). The URLconf is loaded first for that.
get_resolver().url_patterns  # noqa: B018
gc.freeze()

if settings.EMBEDDED_WORKER:
    # One-process mode: the background worker's step functions run in a thread here.
    from messaging.worker import start_embedded_worker

    start_embedded_worker()

"""ASGI entry point: HTTP and the phones' WebSockets, served by Daphne."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from devices.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application,
    }
)

if settings.EMBEDDED_WORKER:
    # One-process mode: the background worker's step functions run in a thread here.
    from messaging.worker import start_embedded_worker

    start_embedded_worker()

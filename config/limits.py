"""The request body limits the servers apply (config/asgi.py, config/wsgi.py), from settings."""

from django.conf import settings
from django.urls import reverse

from accounts.envelope import body_too_large
from accounts.lib.bodylimit import BodyLimits


def body_limits() -> BodyLimits:
    """MAX_BODY_BYTES for every request; BULK_MAX_BODY_BYTES for the bulk send's declared body."""
    return BodyLimits(
        default=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        refusal=body_too_large,
        larger={reverse("api-send-bulk"): settings.BULK_MAX_BODY_BYTES},
    )

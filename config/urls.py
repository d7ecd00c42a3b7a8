"""URL wiring: every app mounts its own API routes and panel pages."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # First: Django tries the patterns in order, and the send API is the busiest route (when
    # it came last, matching the other apps' 65 patterns cost a tenth of a send's CPU).
    # No pattern of another app matches one of messaging's paths (tests/test_urls.py).
    path("", include("messaging.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages that name no icon (JSON answers, the admin).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/mobile/v1/", include("devices.smsgate.urls")),
    path("", include("monitoring.urls")),
    # SMSGate's client API, at its API host's layout and at its private server's.
    path("3rdparty/v1/", include("messaging.smsgate.urls")),
    path("api/3rdparty/v1/", include("messaging.smsgate.urls")),
    path("", include("accounts.urls")),
    path("", include("devices.urls")),
    path("", include("ipn.urls")),
]

# Errors made outside the views answer the API's clients in their shape (accounts/envelope.py).
handler400 = "accounts.views.bad_request"
handler404 = "accounts.views.page_not_found"
handler500 = "accounts.views.server_error"

"""URL wiring: every app mounts its own API routes and panel pages."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/mobile/v1/", include("devices.smsgate.urls")),
    path("", include("monitoring.urls")),
    path("", include("accounts.urls")),
    path("", include("devices.urls")),
    path("", include("ipn.urls")),
    path("", include("messaging.urls")),
]

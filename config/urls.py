"""URL wiring: every app brings its own urls module."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/mobile/v1/", include("devices.smsgate.urls")),
    path("", include("messaging.urls")),
    path("", include("devices.urls")),
    path("", include("ipn.urls")),
    path("", include("accounts.urls")),
]

"""Operations endpoints at the root: /health/live, /health/ready, /metrics; and SMSGate's
health routes under its client API's two prefixes (the rest of that API: messaging/smsgate/)."""

from __future__ import annotations

from django.urls import path

from monitoring import views

urlpatterns = [
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("metrics", views.metrics, name="metrics"),
]

SMSGATE_PROBES = ("live", "ready", "startup")

for prefix in ("3rdparty/v1/", "api/3rdparty/v1/"):
    urlpatterns += [
        path(f"{prefix}health", views.SmsGateHealthApi.as_view()),
        *(path(f"{prefix}health/{probe}", views.SmsGateHealthApi.as_view(probe=probe)) for probe in SMSGATE_PROBES),
    ]

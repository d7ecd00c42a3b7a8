"""Operations endpoints at the root: /health/live, /health/ready, /metrics."""

from __future__ import annotations

from django.urls import path

from monitoring import views

urlpatterns = [
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("metrics", views.metrics, name="metrics"),
]

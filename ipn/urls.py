"""Routes of the ipn app: the IPN API and the IPN pages."""

from __future__ import annotations

from django.urls import path

from ipn import api, views

urlpatterns = [
    path("api/v1/ipn", api.IpnSettingsApi.as_view(), name="api-ipn"),
    path("api/v1/ipn/secret/rotate", api.IpnRotateSecretApi.as_view(), name="api-ipn-rotate-secret"),
    path("api/v1/ipn/test", api.IpnTestApi.as_view(), name="api-ipn-test"),
    path("api/v1/ipn/events", api.IpnEventListApi.as_view(), name="api-ipn-events"),
    path("api/v1/ipn/events/replay-failed", api.IpnReplayFailedApi.as_view(), name="api-ipn-replay-failed"),
    path("api/v1/ipn/events/<str:webhook_id>/replay", api.IpnReplayApi.as_view(), name="api-ipn-replay"),
    # Panel
    path("ipn/", views.ipn_settings, name="ipn"),
    path("ipn/rotate/", views.ipn_rotate, name="ipn-rotate"),
    path("ipn/test/", views.ipn_test, name="ipn-test"),
    path("ipn/events/<str:webhook_id>/", views.ipn_event, name="ipn-event"),
    path("ipn/events/<str:webhook_id>/replay/", views.ipn_replay, name="ipn-replay"),
]

"""Routes of the SMSGate app's private-server API, mounted at `/api/mobile/v1/`.

No trailing slashes: the app concatenates `"$baseUrl/device"` and never adds one.
"""

from __future__ import annotations

from django.urls import path

from devices.smsgate import api, sse

urlpatterns = [
    path("device", api.DeviceApi.as_view(), name="smsgate-device"),
    path("message", api.MessageApi.as_view(), name="smsgate-message"),
    path("messages", api.MessageApi.as_view(), name="smsgate-messages"),
    path("events", sse.events, name="smsgate-events"),
    path("settings", api.SettingsApi.as_view(), name="smsgate-settings"),
    path("webhooks", api.WebhooksApi.as_view(), name="smsgate-webhooks"),
    path("user/code", api.UserCodeApi.as_view(), name="smsgate-user-code"),
    path("user/password", api.UserPasswordApi.as_view(), name="smsgate-user-password"),
    path("hooks/<str:device_id>", api.webhook_receiver, name="smsgate-webhook"),
]

"""Routes of SMSGate's client API, mounted by `config/urls.py` at `/3rdparty/v1/` (the
layout of SMSGate's API host) and `/api/3rdparty/v1/` (its private server's). Its health
routes are monitoring's (`monitoring/urls.py`).

No trailing slashes: the clients join `base_url + "/messages"`. Any other path under the
prefixes gets SMSGate's 404 (`{"message": …}`).
"""

from __future__ import annotations

from django.urls import path, re_path

from messaging.smsgate import api, auth, webhooks

urlpatterns = [
    # Messages (the JavaScript client uses the singular form)
    path("messages", api.MessagesApi.as_view(), name="smsgate-api-messages"),
    path("message", api.MessagesApi.as_view()),
    path("messages/<str:message_id>", api.MessageDetailApi.as_view(), name="smsgate-api-message"),
    path("message/<str:message_id>", api.MessageDetailApi.as_view()),
    # Phones and the list's settings
    path("devices", api.DevicesApi.as_view(), name="smsgate-api-devices"),
    path("devices/<str:device_id>", api.DeviceDetailApi.as_view(), name="smsgate-api-device"),
    path("settings", api.SettingsApi.as_view(), name="smsgate-api-settings"),
    # Inbox and logs
    path("inbox", api.InboxApi.as_view(), name="smsgate-api-inbox"),
    path("inbox/refresh", api.InboxRefreshApi.as_view(), name="smsgate-api-inbox-refresh"),
    path("inbox/export", api.InboxRefreshApi.as_view()),
    path("messages/inbox/export", api.InboxRefreshApi.as_view()),
    path("logs", api.LogsApi.as_view(), name="smsgate-api-logs"),
    # Access tokens
    path("auth/token", api.TokenApi.as_view(), name="smsgate-api-token"),
    path("auth/token/refresh", api.TokenRefreshApi.as_view(), name="smsgate-api-token-refresh"),
    path("auth/token/<str:jti>", api.TokenRevokeApi.as_view(), name="smsgate-api-token-revoke"),
    # Webhooks, delivered by the server (docs/smsgate-clients.md)
    path("webhooks", webhooks.WebhooksApi.as_view(), name="smsgate-api-webhooks"),
    path("webhooks/<str:webhook_id>", webhooks.WebhookDetailApi.as_view(), name="smsgate-api-webhook"),
    # Last: every other path under the prefixes.
    re_path(r"^.*$", auth.not_found),
]

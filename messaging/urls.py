"""Routes of the messaging app: the send, message, list, inbox and verify APIs (and the
GenioSms drop-in path), and the dashboard, message, inbox, verifications, developers and
subscriber pages."""

from __future__ import annotations

from django.urls import path

from messaging import api, views

urlpatterns = [
    # Public API
    path("api/v1/send", api.SendMessageApi.as_view(), name="api-send"),
    path("api/v1/send/bulk", api.SendBulkApi.as_view(), name="api-send-bulk"),
    path("api/v1/messages", api.MessageListApi.as_view(), name="api-messages"),
    path("api/v1/messages/<str:message_id>", api.MessageDetailApi.as_view(), name="api-message"),
    path("api/v1/messages/<str:message_id>/cancel", api.CancelMessageApi.as_view(), name="api-message-cancel"),
    path("api/v1/lists", api.ListListApi.as_view(), name="api-lists"),
    path("api/v1/lists/<str:token>/subscribers", api.SubscriberListApi.as_view(), name="api-subscribers"),
    path("api/v1/lists/<str:token>/subscribers.csv", api.SubscriberExportApi.as_view(), name="api-subscribers-csv"),
    path(
        "api/v1/lists/<str:token>/subscribers/<str:number>",
        api.SubscriberDetailApi.as_view(),
        name="api-subscriber",
    ),
    path("api/v1/lists/<str:token>/broadcast", api.BroadcastApi.as_view(), name="api-broadcast"),
    path("api/v1/devices", api.DeviceListApi.as_view(), name="api-devices"),
    path("api/v1/inbox", api.InboxApi.as_view(), name="api-inbox"),
    path("api/v1/verify", api.VerifyStartApi.as_view(), name="api-verify"),
    path("api/v1/verify/check", api.VerifyCheckApi.as_view(), name="api-verify-check"),
    path("api/v1/verify/<str:verification_id>", api.VerifyDetailApi.as_view(), name="api-verification"),
    # Drop-in for GenioSms clients: the same operation at the original path.
    path("tools/api.pl", api.GenioSmsSendApi.as_view(), name="geniosms-send"),
    # Panel: dashboard
    path("", views.dashboard, name="dashboard"),
    path("live/dashboard/", views.dashboard_live, name="dashboard-live"),
    # Panel: messages and inbox
    path("messages/", views.message_log, name="messages"),
    path("live/messages/", views.message_log_live, name="messages-live"),
    path("messages/<str:message_id>/", views.message_detail, name="message"),
    path("live/messages/<str:message_id>/", views.message_detail_live, name="message-live"),
    path("messages/<str:message_id>/cancel/", views.message_cancel, name="message-cancel"),
    path("send/preview/", views.send_preview, name="send-preview"),
    # Panel: the virtual phone's test SMS and what became of its offers (its page: devices)
    path("phone/test-sms/", views.virtual_phone_test, name="virtual-phone-test"),
    path("phone/offers/", views.virtual_phone_offers, name="virtual-phone-offers"),
    path("inbox/", views.inbox, name="inbox"),
    path("verifications/", views.verifications, name="verifications"),
    path("verifications/limits/<int:pk>/", views.verification_policy, name="verification-policy"),
    # Panel: developers
    path("developers/", views.developers, name="developers"),
    path("developers/code/<slug:slug>/", views.developers_code, name="developers-code"),
    path("developers/guide/", views.api_guide, name="api-guide"),
    # Panel: a list's subscribers (forms on the list page)
    path("lists/<str:token>/subscribers/add/", views.list_subscribers_add, name="list-subscribers-add"),
    path("lists/<str:token>/subscribers/remove/", views.list_subscriber_remove, name="list-subscriber-remove"),
    path("lists/<str:token>/subscribers/replies/", views.list_subscription_replies, name="list-subscription-replies"),
    path("lists/<str:token>/broadcast/", views.list_broadcast, name="list-broadcast"),
    # Panel: a phone's caps and its use of them (the phones' pages: devices)
    path("phones/<str:public_id>/caps/", views.phone_caps, name="phone-caps"),
]

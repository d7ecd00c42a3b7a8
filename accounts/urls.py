from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import api, views
from devices import views as device_views
from ipn import views as ipn_views
from messaging import views as message_views

urlpatterns = [
    path("api/v1/balance", api.BalanceApi.as_view(), name="api-balance"),
    # Panel: signing in and out
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    # Panel: account pages
    path("", views.dashboard, name="dashboard"),
    path("live/dashboard/", views.dashboard_live, name="dashboard-live"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:pk>/", views.key_detail, name="key"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("developers/", views.developers, name="developers"),
    path("developers/code/<slug:slug>/", views.developers_code, name="developers-code"),
    path("developers/guide/", views.api_guide, name="api-guide"),
    path("credit/", views.credit, name="credit"),
    # Panel: lists and phones
    path("lists/", device_views.lists, name="lists"),
    path("lists/<str:token>/", device_views.list_detail, name="list"),
    path("lists/<str:token>/pin/", device_views.list_regenerate_pin, name="list-pin"),
    path("lists/<str:token>/subscribers.csv", device_views.list_subscribers_csv, name="list-subscribers-csv"),
    path("lists/<str:token>/subscribers/add/", views.list_subscribers_add, name="list-subscribers-add"),
    path("lists/<str:token>/subscribers/remove/", views.list_subscriber_remove, name="list-subscriber-remove"),
    path("lists/<str:token>/subscribers/replies/", views.list_subscription_replies, name="list-subscription-replies"),
    path("lists/<str:token>/broadcast/", views.list_broadcast, name="list-broadcast"),
    path("lists/<str:token>/mobile-tokens/", device_views.list_mobile_token_create, name="list-mobile-token"),
    path(
        "lists/<str:token>/mobile-tokens/<int:pk>/revoke/",
        device_views.list_mobile_token_revoke,
        name="list-mobile-token-revoke",
    ),
    path("phones/", device_views.phones, name="phones"),
    path("live/phones/", device_views.phones_live, name="phones-live"),
    path("phones/<str:public_id>/rename/", device_views.phone_rename, name="phone-rename"),
    path("phones/<str:public_id>/disable/", device_views.phone_disable, name="phone-disable"),
    path("phones/<str:public_id>/remove/", device_views.phone_remove, name="phone-remove"),
    path("phone/", device_views.virtual_phone, name="virtual-phone"),
    path("phone/join/", device_views.virtual_phone_join, name="virtual-phone-join"),
    # Panel: messages and inbox
    path("messages/", message_views.message_log, name="messages"),
    path("live/messages/", message_views.message_log_live, name="messages-live"),
    path("messages/<str:message_id>/", message_views.message_detail, name="message"),
    path("live/messages/<str:message_id>/", message_views.message_detail_live, name="message-live"),
    path("messages/<str:message_id>/cancel/", message_views.message_cancel, name="message-cancel"),
    path("inbox/", message_views.inbox, name="inbox"),
    # Panel: IPN
    path("ipn/", ipn_views.ipn_settings, name="ipn"),
    path("ipn/rotate/", ipn_views.ipn_rotate, name="ipn-rotate"),
    path("ipn/test/", ipn_views.ipn_test, name="ipn-test"),
    path("ipn/events/<str:webhook_id>/", ipn_views.ipn_event, name="ipn-event"),
    path("ipn/events/<str:webhook_id>/replay/", ipn_views.ipn_replay, name="ipn-replay"),
]

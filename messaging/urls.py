from django.urls import path

from messaging import api

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
    # Drop-in for GenioSms clients: the same operation at the original path.
    path("tools/api.pl", api.GenioSmsSendApi.as_view(), name="geniosms-send"),
]

"""Routes of the devices app: enrolment and the list, phone and virtual-phone pages.
(The SMSGate app's API has its own module, `devices/smsgate/urls.py`.)"""

from __future__ import annotations

from django.urls import path

from devices import api, views

urlpatterns = [
    path("api/device/v1/enroll", api.EnrolDeviceApi.as_view(), name="device-enroll"),
    path("agent.pyz", views.agent_download, name="agent-download"),
    # Panel: lists
    path("lists/", views.lists, name="lists"),
    path("lists/<str:token>/", views.list_detail, name="list"),
    path("lists/<str:token>/pin/", views.list_regenerate_pin, name="list-pin"),
    path("lists/<str:token>/subscribers.csv", views.list_subscribers_csv, name="list-subscribers-csv"),
    path("lists/<str:token>/mobile-tokens/", views.list_mobile_token_create, name="list-mobile-token"),
    path(
        "lists/<str:token>/mobile-tokens/<int:pk>/revoke/",
        views.list_mobile_token_revoke,
        name="list-mobile-token-revoke",
    ),
    # Panel: phones
    path("phones/", views.phones, name="phones"),
    path("live/phones/", views.phones_live, name="phones-live"),
    path("phones/<str:public_id>/rename/", views.phone_rename, name="phone-rename"),
    path("phones/<str:public_id>/disable/", views.phone_disable, name="phone-disable"),
    path("phones/<str:public_id>/remove/", views.phone_remove, name="phone-remove"),
    path("phone/", views.virtual_phone, name="virtual-phone"),
    path("phone/join/", views.virtual_phone_join, name="virtual-phone-join"),
    path("phone/leave/", views.virtual_phone_leave, name="virtual-phone-leave"),
    path("phone/status/", views.virtual_phone_status, name="virtual-phone-status"),
]

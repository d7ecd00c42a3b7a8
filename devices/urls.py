from django.urls import path

from devices import api

urlpatterns = [
    path("api/device/v1/enroll", api.EnrolDeviceApi.as_view(), name="device-enroll"),
]

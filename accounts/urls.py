from django.urls import path

from accounts import api

urlpatterns = [
    path("api/v1/balance", api.BalanceApi.as_view(), name="api-balance"),
]

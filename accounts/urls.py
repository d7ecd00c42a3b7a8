"""Routes of the accounts app: the balance API and the sign-in, key and credit pages."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import api, views

urlpatterns = [
    path("api/v1/balance", api.BalanceApi.as_view(), name="api-balance"),
    # Panel: signing in and out
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    # Panel: API keys and credit
    path("keys/", views.keys, name="keys"),
    path("keys/<int:pk>/", views.key_detail, name="key"),
    path("keys/<int:pk>/created/", views.key_created, name="key-created"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("credit/", views.credit, name="credit"),
    path("live/credit/", views.credit_live, name="credit-live"),
]

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent, SmsGateWebhook


@admin.register(IpnEndpoint)
class IpnEndpointAdmin(admin.ModelAdmin[IpnEndpoint]):
    list_display = ("account", "url", "enabled", "format", "disabled_reason", "failing_since", "last_success_at")
    list_filter = ("enabled", "format")
    search_fields = ("account__name", "url")
    # Secrets are shown in the panel to their owner; never here.
    exclude = ("secret", "previous_secret", "smsgate_signing_key")
    readonly_fields = ("disabled_at", "failing_since", "last_success_at", "previous_secret_expires_at")


class AttemptInline(admin.TabularInline[IpnAttempt, IpnEvent]):
    model = IpnAttempt
    extra = 0
    fields = ("at", "url", "status_code", "latency_ms", "outcome", "error", "retry_after", "is_replay", "is_test")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(IpnEvent)
class IpnEventAdmin(admin.ModelAdmin[IpnEvent]):
    list_display = ("webhook_id", "account", "type", "status", "attempts", "next_attempt_at", "created_at")
    list_filter = ("status", "type")
    search_fields = ("webhook_id", "account__name")
    readonly_fields = (
        "webhook_id",
        "account",
        "type",
        "message",
        "smsgate_webhook",
        "body",
        "content_type",
        "occurred_at",
        "created_at",
    )
    inlines = [AttemptInline]


@admin.register(SmsGateWebhook)
class SmsGateWebhookAdmin(admin.ModelAdmin[SmsGateWebhook]):
    list_display = ("public_id", "account", "event", "url", "phone_list", "device", "disabled_reason", "created_at")
    list_filter = ("event",)
    search_fields = ("public_id", "account__name", "url")
    raw_id_fields = ("account", "phone_list", "device")
    readonly_fields = ("disabled_at", "failing_since", "last_success_at")

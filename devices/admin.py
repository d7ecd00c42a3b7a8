"""Operator views of lists and phones. Secrets (device tokens) exist only as digests."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin import AccountAdmin as BaseAccountAdmin
from accounts.models import Account
from devices import services
from devices.models import Device, EnrolmentToken, PhoneList, Subscriber

# The account's admin, with switching it off and on: deactivating stops its phones too,
# which only this app can reach, so the actions are added here (accounts' admin is below).
admin.site.unregister(Account)


@admin.register(Account)
class AccountAdmin(BaseAccountAdmin):
    readonly_fields = [*BaseAccountAdmin.readonly_fields, "is_active"]
    actions = ["deactivate", "reactivate"]

    @admin.action(description="Deactivate the selected accounts (keys, phones and sign-in stop at once)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            services.deactivate_account(account=account)
        messages.info(request, "Deactivated: their API keys, phones and panel sessions have stopped.")

    @admin.action(description="Reactivate the selected accounts")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            services.reactivate_account(account=account)


class DeviceInline(admin.TabularInline[Device, PhoneList]):
    model = Device
    fields = ["public_id", "name", "kind", "is_enabled", "is_connected", "last_seen_at"]
    readonly_fields = ["public_id", "name", "kind", "is_enabled", "is_connected", "last_seen_at"]
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(PhoneList)
class PhoneListAdmin(admin.ModelAdmin[PhoneList]):
    list_display = ["name", "token", "account", "rate_limit_per_minute", "lease_seconds", "created_at"]
    search_fields = ["name", "token", "account__name"]
    readonly_fields = ["token", "created_at"]
    raw_id_fields = ["account"]
    inlines = [DeviceInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin[Device]):
    list_display = ["name", "public_id", "phone_list", "kind", "is_enabled", "is_connected", "last_seen_at", "battery"]
    list_filter = ["kind", "is_enabled", "is_connected"]
    search_fields = ["name", "public_id", "phone_list__token", "account__name"]
    readonly_fields = [
        "public_id",
        "token_digest",
        "channel_name",
        "last_seen_at",
        "connected_at",
        "is_connected",
        "created_at",
        "removed_at",
    ]
    raw_id_fields = ["account", "phone_list"]


@admin.register(EnrolmentToken)
class EnrolmentTokenAdmin(admin.ModelAdmin[EnrolmentToken]):
    list_display = ["prefix", "phone_list", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at"]
    raw_id_fields = ["phone_list"]


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin[Subscriber]):
    list_display = ["number", "phone_list", "source", "subscribed_at", "unsubscribed_at"]
    search_fields = ["number", "phone_list__token"]
    raw_id_fields = ["phone_list"]

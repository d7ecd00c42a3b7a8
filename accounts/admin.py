from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.forms import ThrottledAdminLoginForm
from accounts.models import Account, ApiKey, LedgerEntry, User

# `/admin/login/` counts wrong passwords with the panel's sign-in (the same scopes).
admin.site.login_form = ThrottledAdminLoginForm


class LedgerInline(admin.TabularInline[LedgerEntry, Account]):
    model = LedgerEntry
    extra = 0
    fields = ("created_at", "kind", "amount", "debt_change", "balance_after", "reason", "message")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin[Account]):
    list_display = ("name", "balance", "debt", "price_per_part", "daily_spend_cap", "is_active", "created_at")
    search_fields = ("name", "users__email")
    readonly_fields = ["balance", "debt"]
    inlines = [LedgerInline]


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    list_display = ("username", "email", "account", "is_staff")
    fieldsets = (*(BaseUserAdmin.fieldsets or ()), ("Phonefleet", {"fields": ("account",)}))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin[LedgerEntry]):
    """Top-ups are added here; the balance moves through the credit service, never by hand."""

    list_display = ("created_at", "account", "kind", "amount", "debt_change", "balance_after", "reason")
    list_filter = ("kind",)
    fields = ("account", "amount", "reason")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LedgerEntry, form: object, change: bool) -> None:
        entry = services.top_up_credit(
            account=obj.account,
            amount=obj.amount,
            reason=obj.reason or "Top-up",
            user=request.user if isinstance(request.user, User) else None,
        )
        obj.pk = entry.pk
        state = Account.objects.values("balance", "debt").get(pk=obj.account_id)
        owed = f", {state['debt']} still owed" if state["debt"] else ""
        messages.info(request, f"Booked a top-up of {entry.amount}; the balance is now {state['balance']}{owed}.")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "prefix", "account", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "digest", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created in the panel, where the secret is shown once

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.revoke_api_key(key=key)

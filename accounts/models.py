"""Accounts (tenants), their users, the credit ledger and API keys."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

# A message of the most parts (messaging.services.accept.MAX_PARTS = 10) must still cost
# what a message's 32-bit `cost` column holds.
MAX_PRICE_PER_PART = (2**31 - 1) // 10


def default_price_per_part() -> int:
    return int(settings.DEFAULT_PRICE_PER_PART)


class Account(models.Model):
    """A customer. Its balance is in integer credit units and never goes negative; what a
    late `sent` costs beyond the balance is owed (`debt`), which stops sending until a
    top-up repays it (docs/api.md, "Credit")."""

    name = models.CharField(max_length=200)
    balance = models.BigIntegerField(default=0)
    # Credits owed for messages that were refunded and then reported sent after all, when
    # the balance no longer covered them. Sending is refused while it is above zero.
    debt = models.BigIntegerField(default=0)
    # Credits charged for each SMS part; set by the operator in the admin.
    price_per_part = models.PositiveIntegerField(
        default=default_price_per_part, validators=[MaxValueValidator(MAX_PRICE_PER_PART)]
    )
    # Optional cap on credits spent per UTC day (None = no cap).
    daily_spend_cap = models.PositiveBigIntegerField(null=True, blank=True)
    # Credits debited on the UTC day `spent_on` (kept by the debit UPDATE itself, so the cap
    # is checked atomically with the balance).
    spent_on = models.DateField(null=True, blank=True)
    spent_that_day = models.PositiveBigIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative"),
            models.CheckConstraint(condition=Q(debt__gte=0), name="account_debt_not_negative"),
            models.CheckConstraint(
                condition=Q(price_per_part__lte=MAX_PRICE_PER_PART), name="account_price_per_part_fits_a_message"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person who signs in to the panel. Operators (staff) may have no account."""

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="users")

    def __str__(self) -> str:
        return self.email or self.username


class LedgerEntry(models.Model):
    """One movement of credit. The balance always equals the sum of the entries' amounts,
    and the debt the sum of their debt changes."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        DEBIT = "debit", "Debit"
        REFUND = "refund", "Refund"
        REVERSAL = "reversal", "Refund reversal"
        ADJUSTMENT = "adjustment", "Adjustment"
        REPAYMENT = "repayment", "Debt repayment"

    # Indexed as the first column of (account, created_at).
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="ledger", db_index=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # Signed: positive adds credit, negative takes it.
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    # Signed: positive is owed (a reversal the balance could not cover), negative repays.
    debt_change = models.BigIntegerField(default=0, db_default=0)  # raw INSERTs of debits leave it out
    reason = models.CharField(max_length=200, blank=True)
    message = models.ForeignKey(
        "messaging.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    # Set on the operator's entries only: indexed where set.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["created_by"], condition=Q(created_by__isnull=False), name="ledger_created_by"),
        ]
        constraints = [
            # A message is charged once, refunded at most once, and a refund reversed at most once.
            models.UniqueConstraint(
                fields=["message", "kind"],
                condition=Q(message__isnull=False) & Q(kind__in=["debit", "refund", "reversal"]),
                name="ledger_one_entry_per_message_and_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} → {self.balance_after}"


class ApiKey(models.Model):
    """One integration ("API" in the seed's sense). The secret is stored only as a digest."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The visible start of the key, e.g. "pf_live_AbC1", to recognise it in the panel.
    prefix = models.CharField(max_length=24)
    digest = models.CharField(max_length=64, unique=True)
    # CIDR strings; empty means "allow any IP" (status code 2).
    allowed_ips = models.JSONField(default=list, blank=True)
    # Origins allowed to call the API from a browser (CORS).
    cors_origins = models.JSONField(default=list, blank=True)
    default_list = models.ForeignKey(
        "devices.PhoneList", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Requests per minute for this key (None = the global default).
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def allows_any_ip(self) -> bool:
        return not self.allowed_ips


class LoginThrottle(models.Model):
    """Failure counter for a guessable secret (PIN, password, code) from one scope, counted
    atomically; also the request counter of a plain rate limit (`count_request`)."""

    scope = models.CharField(max_length=200, unique=True)
    failures = models.PositiveIntegerField(default=0)
    # Attempts being checked right now (each holds a slot until it is known right or wrong).
    pending = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)
    lockouts = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.scope}: {self.failures}"

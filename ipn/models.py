"""IPN: per-account callback settings, the event outbox and every delivery attempt."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.logging import redact


class IpnEndpoint(models.Model):
    """Where and how an account hears about its messages."""

    class Format(models.TextChoices):
        STANDARD = "standard", "Standard Webhooks (JSON)"
        GENIOSMS = "geniosms", "GenioSms (form-encoded)"

    account = models.OneToOneField("accounts.Account", on_delete=models.CASCADE, related_name="ipn")
    url = models.URLField(max_length=1000, blank=True)
    enabled = models.BooleanField(default=False)
    # Event types to send; empty means all.
    events = models.JSONField(default=list, blank=True)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.STANDARD)
    # "whsec_<base64 of 32 bytes>"; the previous one keeps signing until it expires.
    secret = models.CharField(max_length=80)
    previous_secret = models.CharField(max_length=80, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Set when the endpoint was switched off for failing (410, or failures for days).
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Start of the current run of failures (None after a success).
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # SMSGate receivers verify `X-Signature` with this key (its `webhooks.signing_key`
    # setting); created with the account's first SMSGate webhook.
    smsgate_signing_key = models.CharField(max_length=100, blank=True)
    # True while the account has SMSGate webhooks: reports then write their events too.
    has_webhooks = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"IPN of {self.account_id}: {redact(self.url) or '-'}"


class SmsGateWebhook(models.Model):
    """A webhook registered through the SMSGate client API (`POST /3rdparty/v1/webhooks`):
    one event, one URL. The server delivers it through the outbox, in SMSGate's envelope
    and signature (docs/smsgate-clients.md); ipn reads its list and phone only by id."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="smsgate_webhooks")
    # The SMSGate `id`: the client's own, or generated.
    public_id = models.CharField(max_length=64)
    url = models.URLField(max_length=1000)
    event = models.CharField(max_length=40)
    # Only the events of this list (the SMSGate login's); null: every list of the account.
    phone_list = models.ForeignKey(
        "devices.PhoneList", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Only the events of this phone (SMSGate's `deviceId`); null: any phone.
    device = models.ForeignKey("devices.Device", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Health, as the IPN endpoint's: 410, or failures for days, switch it off.
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "public_id"], name="smsgate_webhook_id_unique")]
        indexes = [models.Index(fields=["account", "event"])]

    def __str__(self) -> str:
        return f"{self.event} -> {self.url} ({self.public_id})"


class IpnEvent(models.Model):
    """One event in the outbox, written in the transaction that caused it.

    The body is serialised once and stored; every attempt signs and sends exactly
    these bytes.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retries exhausted)"
        SKIPPED = "skipped", "Skipped (endpoint disabled)"

    # The `webhook-id`: the same on every retry and replay; contains no "." (unique by a
    # constraint in Meta: `unique=True` would add a second, pattern-matching index that no
    # query uses).
    webhook_id = models.CharField(max_length=40)
    # Indexed only as the first column of the (account, -created_at) index below.
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="ipn_events", db_index=False)
    type = models.CharField(max_length=40)
    message = models.ForeignKey(
        "messaging.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="ipn_events"
    )
    # Set when the event goes to one SMSGate webhook (its URL and signature) rather than
    # to the account's IPN URL.
    # Indexed where set (`ipn_event_smsgate_webhook`): most events have none.
    smsgate_webhook = models.ForeignKey(
        SmsGateWebhook, null=True, blank=True, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    body = models.TextField()
    content_type = models.CharField(max_length=60, default="application/json")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Attempts in the current schedule (a manual replay starts a new one).
    attempts = models.PositiveSmallIntegerField(default=0)
    schedule_started_at = models.DateTimeField(default=timezone.now)
    # How many times someone asked to deliver it again (panel or API).
    replays = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker holds the row until this time; after a crash another worker takes it.
    locked_until = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    # Every read by time is one account's: indexed only in (account, -created_at).
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Two rows a message, each updated two or three times (the claim, the outcome), so
        # each index here is one a query needs (docs/benchmarks.md, "Third pass").
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="ipn_event_due"),
            models.Index(fields=["account", "-created_at"]),
            models.Index(
                fields=["smsgate_webhook"],
                condition=models.Q(smsgate_webhook__isnull=False),
                name="ipn_event_smsgate_webhook",
            ),
        ]
        constraints = [models.UniqueConstraint(fields=["webhook_id"], name="ipn_event_webhook_id_unique")]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id} ({self.status})"


class IpnAttempt(models.Model):
    """One try at delivering an event, with what the receiver answered."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        RETRY = "retry", "Failed, will retry"
        PERMANENT = "permanent", "Failed permanently"

    event = models.ForeignKey(IpnEvent, on_delete=models.CASCADE, related_name="attempts_log")
    at = models.DateTimeField(default=timezone.now)
    url = models.URLField(max_length=1000)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    # The receiver's `Retry-After`, in seconds, when it sent one.
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    # At most 20,000 bytes of the answer.
    response_body = models.TextField(blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    is_replay = models.BooleanField(default=False)
    is_test = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.status_code or self.error} ({self.outcome})"

"""Messages, their timeline, received SMS and idempotency records."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Message(models.Model):
    """One SMS to one number, from acceptance to its final state."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        ASSIGNED = "assigned", "Assigned"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.QUEUED, Status.ASSIGNED)
    REFUNDED_STATUSES = (Status.FAILED, Status.EXPIRED, Status.CANCELLED)
    FINAL_STATUSES = (Status.DELIVERED, Status.FAILED, Status.EXPIRED, Status.CANCELLED)

    # Public id: "msg_…" (unique by a constraint in Meta: `unique=True` would add a second,
    # pattern-matching index that no query uses).
    public_id = models.CharField(max_length=40)
    # Indexed only as the first column of the (account, …) indexes below.
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="messages", db_index=False)
    # Not indexed: nothing looks messages up by key (keys are revoked, not deleted).
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    phone_list = models.ForeignKey(
        "devices.PhoneList", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    # Set when the caller pinned the message to one phone (`device_id`); indexed where set.
    pinned_device = models.ForeignKey(
        "devices.Device",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pinned_messages",
        db_index=False,
    )
    # The phone that currently holds (or last held) the assignment; indexed by (device, assigned_at).
    device = models.ForeignKey(
        "devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages", db_index=False
    )
    to = models.CharField(max_length=32)
    text = models.TextField()
    parts = models.PositiveSmallIntegerField(default=1)
    encoding = models.CharField(max_length=8, default="gsm7")
    sim = models.PositiveSmallIntegerField(null=True, blank=True)
    ref = models.CharField(max_length=255, blank=True)
    batch_id = models.CharField(max_length=40, blank=True)
    # Credits taken when accepted.
    cost = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    # Not offered before this time (scheduled sends).
    send_at = models.DateTimeField(default=timezone.now)
    # Ends `expired` if nobody sent it by then.
    expires_at = models.DateTimeField()
    # While assigned: the assignee must report before this.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How many times it has been assigned (a re-offer after a lapsed lease counts).
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Every status change rewrites the row in every index (status is in some), so each
        # index here is one a query needs.
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["account", "status", "-created_at"]),
            models.Index(fields=["account", "ref"], condition=~Q(ref=""), name="msg_ref"),
            models.Index(fields=["pinned_device"], condition=Q(pinned_device__isnull=False), name="msg_pinned"),
            models.Index(
                fields=["phone_list", "send_at", "created_at"], condition=Q(status="queued"), name="msg_open_per_list"
            ),
            models.Index(fields=["lease_expires_at"], condition=Q(status="assigned"), name="msg_assigned_lease"),
            models.Index(fields=["expires_at"], condition=Q(status__in=["queued", "assigned"]), name="msg_open_expiry"),
            # Only assigned messages have a phone: a new message adds no entry here.
            models.Index(fields=["device", "assigned_at"], condition=Q(device__isnull=False), name="msg_device"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="message_public_id_unique"),
            models.CheckConstraint(
                condition=Q(phone_list__isnull=False) | Q(pinned_device__isnull=False), name="message_has_a_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} → {self.to} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class MessageEvent(models.Model):
    """One transition of a message, with its time and the phone involved."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=10, choices=Message.Status.choices)
    device = models.ForeignKey("devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.message_id} {self.status} @ {self.at:%H:%M:%S}"


class InboundSms(models.Model):
    """An SMS a phone of a list received."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="inbound_sms")
    phone_list = models.ForeignKey("devices.PhoneList", on_delete=models.CASCADE, related_name="inbound_sms")
    device = models.ForeignKey("devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    public_id = models.CharField(max_length=40, unique=True)
    sender = models.CharField(max_length=32)
    text = models.TextField()
    sim = models.PositiveSmallIntegerField(null=True, blank=True)
    received_at = models.DateTimeField()
    # Same SMS reported by several phones of one list is stored once.
    fingerprint = models.CharField(max_length=64)
    # "subscribe", "unsubscribe" or "" when the text was a list keyword.
    keyword = models.CharField(max_length=12, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "inbound SMS"
        indexes = [models.Index(fields=["account", "-received_at"])]
        constraints = [
            models.UniqueConstraint(fields=["phone_list", "fingerprint"], name="inbound_sms_once_per_list"),
        ]

    def __str__(self) -> str:
        return f"{self.sender}: {self.text[:30]}"


class IdempotencyRecord(models.Model):
    """The stored answer to a request made with an `Idempotency-Key` (kept 24 h)."""

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # None while the first request is still running.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "endpoint", "key"], name="idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one worker process (`manage.py worker`, or the embedded
    one): written between units of work, read by /health/ready and /metrics."""

    # "<host>:<pid>": one row per process; rows of processes long gone are deleted.
    worker = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker} @ {self.beat_at:%H:%M:%S}"

"""Messages, their timeline, received SMS, idempotency records and verifications (OTP)."""

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
    # What the API, the panel and callbacks show. For a verification it is the text with the
    # code masked; the phone gets the real text from `sealed_text`.
    text = models.TextField()
    # The text the phone sends, encrypted with the server's key (messaging/lib/otp.py), when
    # `text` is only its masked copy; "" for every other message, and once the verification ends.
    sealed_text = models.TextField(blank=True, default="")
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
            # A batch's messages: one SMSGate message's recipients (SmsGateMessage.batch_id).
            models.Index(fields=["batch_id"], condition=~Q(batch_id=""), name="msg_batch"),
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
    # Indexed only where a query needs it (the two partial indexes below): three or four
    # rows a message, and phones are removed, never deleted, by the app.
    device = models.ForeignKey(
        "devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    detail = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            # A phone's caps count its assignments in a window (dispatch._cap_use): these
            # rows stay with the phone when the message moves on to another one.
            models.Index(
                fields=["device", "at"], condition=models.Q(status="assigned"), name="msgevent_device_assigned"
            ),
            # A claim's "not failed by this phone before" (failover): only failed rows, so the
            # lookup is by message and never walks a phone's whole history.
            models.Index(fields=["message", "device"], condition=models.Q(status="failed"), name="msgevent_failed"),
        ]

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


class Verification(models.Model):
    """A one-time code sent by SMS to one number, and its checks (docs/api.md, Verify).

    The code is stored only as a keyed digest (`code_digest`); its SMS is a normal message
    whose stored text has the code masked."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        EXPIRED = "expired", "Expired"
        REPLACED = "replaced", "Replaced by a newer one"
        LOCKED = "locked", "Locked (too many wrong codes)"

    # Wrong codes a verification takes before it is locked.
    MAX_ATTEMPTS = 5

    # Public id: "ver_…".
    public_id = models.CharField(max_length=40)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Limits and the panel go by key (keys are revoked, not deleted); indexed as the first
    # column of the (api_key, …) indexes below.
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    message = models.ForeignKey(Message, null=True, on_delete=models.SET_NULL, related_name="+")
    to = models.CharField(max_length=32)
    # hex HMAC-SHA256 of the id and the code, keyed with VERIFY_SECRET (messaging/lib/otp.py).
    code_digest = models.CharField(max_length=64)
    length = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Wrong codes so far.
    attempts = models.PositiveSmallIntegerField(default=0)
    ref = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    # When it stopped being pending (approved, expired, replaced or locked).
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            # The per-key ceiling and the panel's per-key view.
            models.Index(fields=["api_key", "-created_at"]),
            # The per-number limits and checks by number.
            models.Index(fields=["api_key", "to", "-created_at"]),
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="ver_pending_expiry"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="verification_public_id_unique"),
            # Starting again replaces the pending one: never two live codes for one number and key.
            models.UniqueConstraint(
                fields=["api_key", "to"], condition=Q(status="pending"), name="verification_one_pending_per_number"
            ),
            models.CheckConstraint(condition=Q(attempts__lte=5), name="verification_attempts_at_most_5"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} → {self.to} ({self.status})"

    @property
    def attempts_left(self) -> int:
        if self.status != self.Status.PENDING:
            return 0
        return max(self.MAX_ATTEMPTS - self.attempts, 0)


class VerificationCheck(models.Model):
    """One `verify/check` call and what it answered (the code itself is not kept)."""

    class Outcome(models.TextChoices):
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied (wrong code)"
        EXPIRED = "expired", "Expired (no longer open)"
        TOO_MANY_ATTEMPTS = "too_many_attempts", "Too many attempts"

    verification = models.ForeignKey(Verification, on_delete=models.CASCADE, related_name="checks")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.verification_id} {self.outcome} @ {self.at:%H:%M:%S}"


class VerificationPolicy(models.Model):
    """One API key's limits against SMS pumping (a key without a row has the defaults)."""

    DEFAULT_PER_HOUR = 100
    DEFAULT_NUMBER_INTERVAL_SECONDS = 30
    DEFAULT_NUMBER_PER_HOUR = 5

    api_key = models.OneToOneField("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    # Countries (ISO 3166 alpha-2) codes may be sent to; empty = the country of the list used.
    countries = models.JSONField(default=list, blank=True)
    # Verifications this key may start per hour, whatever the numbers.
    per_hour = models.PositiveIntegerField(default=DEFAULT_PER_HOUR)
    # Per number: seconds between two starts, and starts per hour.
    number_interval_seconds = models.PositiveIntegerField(default=DEFAULT_NUMBER_INTERVAL_SECONDS)
    number_per_hour = models.PositiveIntegerField(default=DEFAULT_NUMBER_PER_HOUR)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "verification policies"

    def __str__(self) -> str:
        return f"verification policy of key {self.api_key_id}"


class SmsGateMessage(models.Model):
    """A message sent through SMSGate's client API (`/3rdparty/v1/messages`): one SMSGate
    id for up to 100 recipients, each a Phonefleet message of the batch `batch_id`."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+", db_index=False)
    # SMSGate's message id: the client's own (unique per account: a repeat is refused), or one we made.
    external_id = models.CharField(max_length=36)
    batch_id = models.CharField(max_length=40)
    phone_list = models.ForeignKey("devices.PhoneList", null=True, on_delete=models.SET_NULL, related_name="+")
    # Who sent it: an API key, or a list's SMSGate login.
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    login = models.CharField(max_length=16, blank=True)
    # The phone the caller asked for (`deviceId`), when it did.
    device_id = models.CharField(max_length=40, blank=True)
    with_delivery_report = models.BooleanField(default=True)
    priority = models.SmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"], name="smsgate_msg_account")]
        constraints = [
            models.UniqueConstraint(fields=["account", "external_id"], name="smsgate_msg_external_id_unique")
        ]

    def __str__(self) -> str:
        return f"SMSGate message {self.external_id}"


class SmsGateToken(models.Model):
    """An access or refresh token issued by SMSGate's `POST /auth/token` (the token itself
    is a signed JWT and is not stored; this row makes it revocable)."""

    class Kind(models.TextChoices):
        ACCESS = "access", "Access"
        REFRESH = "refresh", "Refresh"

    jti = models.CharField(max_length=40, unique=True)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # The access token a refresh token was issued with (revoking one revokes both).
    pair_jti = models.CharField(max_length=40, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind} token {self.jti}"

"""Lists of phones, the phones themselves, their enrolment tokens and list subscribers."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

# A phone is online while its last sign of life is this recent.
PRESENCE_TTL = timedelta(seconds=75)

# The sliding windows of a phone's caps (how many assignments it may get in each), by the
# name the API and the fields use: `rate_limit_per_<name>`.
CAP_WINDOWS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
CAP_FIELDS: dict[str, str] = {name: f"rate_limit_per_{name}" for name in CAP_WINDOWS}


class PhoneListQuerySet(models.QuerySet["PhoneList"]):
    def with_phone_counts(self) -> PhoneListQuerySet:
        """Each list with `phone_count` (phones not removed) and `online_count`
        (its phones in `Device.objects.online()`)."""
        return self.annotate(
            phone_count=Count("devices", filter=Q(devices__removed_at__isnull=True)),
            online_count=Count("devices", filter=Q(devices__in=Device.objects.online())),
        )


class PhoneList(models.Model):
    """A named group of phones of one account, joined with the list's PIN."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="lists")
    name = models.CharField(max_length=100)
    # Public token used by API calls: "lst_…".
    token = models.CharField(max_length=40, unique=True)
    # Digits; leading zeros matter, so it is a string. Unique: enrolment knows only the PIN.
    pin = models.CharField(max_length=16, unique=True)
    default_country = models.CharField(max_length=2, default="IT")
    # Caps: messages one phone of this list may be given per minute, hour and day (None =
    # no cap); each phone may set its own instead (Device.rate_limit_per_*).
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_hour = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_day = models.PositiveIntegerField(null=True, blank=True)
    # How long a phone may hold an assignment without reporting.
    lease_seconds = models.PositiveIntegerField(default=120)
    # Default time-to-live of a message sent through this list.
    default_ttl_seconds = models.PositiveIntegerField(default=24 * 3600)
    # Subscriptions by SMS ("OK" / "DEL") and their optional confirmation replies.
    confirm_subscriptions = models.BooleanField(default=False)
    subscribe_reply = models.CharField(max_length=160, blank=True, default="You are subscribed. Text DEL to leave.")
    unsubscribe_reply = models.CharField(max_length=160, blank=True, default="You have left the list.")
    # The text of verification codes sent through this list when the call gives none.
    verify_template = models.CharField(max_length=300, default="Your code is {code}")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PhoneListQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.name

    def phone_settings(self) -> dict[str, object]:
        """The settings a phone receives in its `hello` frame."""
        return {
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "lease_seconds": self.lease_seconds,
            "default_country": self.default_country,
        }


class DeviceQuerySet(models.QuerySet["Device"]):
    def online(self, *, at: datetime | None = None) -> DeviceQuerySet:
        """The phones online now (or at `at`): enabled, not removed, connected, and seen
        within PRESENCE_TTL. The one definition of "online" every page, API and
        offer count uses."""
        since = (at or timezone.now()) - PRESENCE_TTL
        return self.filter(is_enabled=True, removed_at__isnull=True, is_connected=True, last_seen_at__gte=since)

    def with_online(self) -> DeviceQuerySet:
        """Each phone with `is_online`: whether `online()` holds it."""
        return self.annotate(is_online=Exists(Device.objects.online().filter(pk=OuterRef("pk"))))


class Device(models.Model):
    """One phone in one list. Its secret token is stored only as a digest."""

    class Kind(models.TextChoices):
        WEBSOCKET = "ws", "Phonefleet agent (WebSocket)"
        SMSGATE = "smsgate", "SMSGate Android app"
        BROWSER = "browser", "Virtual phone (browser)"

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="devices")
    phone_list = models.ForeignKey(PhoneList, on_delete=models.CASCADE, related_name="devices")
    # Public id: "dev_…".
    public_id = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    model = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.WEBSOCKET)
    sims = models.JSONField(default=list, blank=True)
    # The phone's own number(s), when known (used as `from` in GenioSms IPN).
    phone_number = models.CharField(max_length=32, blank=True)
    token_digest = models.CharField(max_length=64, unique=True)
    app_version = models.CharField(max_length=40, blank=True)
    is_enabled = models.BooleanField(default=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Presence: a lease, refreshed by pings and frames.
    # Not indexed, so that presence writes (this and `is_connected`, every 37.5 s a phone)
    # are HOT updates: no index entry written, the row rewritten in its own page, which
    # the table's fillfactor leaves room for (migration 0005, docs/benchmarks.md). Phones
    # are found by list, account or id; `online()` filters those few rows.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    is_connected = models.BooleanField(default=False)
    # The channel-layer name of the current WebSocket connection, if any.
    channel_name = models.CharField(max_length=200, blank=True)
    is_available = models.BooleanField(default=True)
    battery = models.SmallIntegerField(null=True, blank=True)
    signal = models.SmallIntegerField(null=True, blank=True)
    # After a phone-side failed send the phone is neither offered work nor may claim until
    # this time (messaging failover; docs/device-protocol.md, "Failed sends"). The pause
    # doubles with each phone-side failure in a row, counted here; a `sent` resets both.
    paused_until = models.DateTimeField(null=True, blank=True)
    failures_in_a_row = models.PositiveSmallIntegerField(default=0)
    # SMSGate phones: the key they sign their webhooks with.
    webhook_signing_key = models.CharField(max_length=64, blank=True)
    # This phone's own caps (None = its list's), e.g. for a SIM its carrier allows less.
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_hour = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_day = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def is_active(self) -> bool:
        return self.is_enabled and self.removed_at is None

    @property
    def caps(self) -> dict[str, int | None]:
        """The caps that apply to this phone, by window name: its own, else its list's."""
        own = {name: getattr(self, field) for name, field in CAP_FIELDS.items()}
        return {name: own[name] or getattr(self.phone_list, CAP_FIELDS[name]) for name in CAP_WINDOWS}

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None and self.paused_until > timezone.now()


class EnrolmentToken(models.Model):
    """A list's private token for SMSGate phones ("Private Token" in the app)."""

    phone_list = models.ForeignKey(PhoneList, on_delete=models.CASCADE, related_name="enrolment_tokens")
    prefix = models.CharField(max_length=24)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}…"


class Subscriber(models.Model):
    """A person on a list: joined by texting OK, by the panel, or by the API."""

    class Source(models.TextChoices):
        SMS = "sms", "SMS keyword"
        PANEL = "panel", "Panel"
        API = "api", "API"
        IMPORT = "import", "Import"

    phone_list = models.ForeignKey(PhoneList, on_delete=models.CASCADE, related_name="subscribers")
    number = models.CharField(max_length=32)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PANEL)
    subscribed_at = models.DateTimeField(default=timezone.now)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phone_list", "number"], name="subscriber_unique_per_list")]

    def __str__(self) -> str:
        return self.number

    @property
    def is_subscribed(self) -> bool:
        return self.unsubscribed_at is None

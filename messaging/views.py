"""Panel pages of the messaging app: the dashboard, the message log and the panel's send
form, one message's timeline, the inbox, verifications (with each key's limits), the
developers pages (code examples hold the account's own values) and the subscriber forms of
a list's page (they send and change subscriptions)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import columns, errors
from accounts import selectors as account_selectors
from accounts.models import Account, ApiKey
from accounts.views import PanelRequest, account_required, base_url_for, current_account
from devices import selectors as device_selectors
from devices import services as device_services
from devices.models import CAP_FIELDS, Device, PhoneList, Subscriber
from messaging import selectors
from messaging.lib import numbers, segments, snippets
from messaging.models import Message, Verification
from messaging.services import accept, subscriptions, verify

PAGE_SIZE = 50


class MessageFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Message.Status.choices])
    list = forms.ChoiceField(required=False)
    q = forms.CharField(required=False, label="Number, ref or id")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, lists: QuerySet[PhoneList], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lists = {pl.token: pl for pl in lists}
        choices = [("", "Any list")] + [(t, pl.name) for t, pl in self.lists.items()]
        field = self.fields["list"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def _filtered_messages(request: PanelRequest) -> tuple[MessageFilterForm, QuerySet[Message]]:
    account = current_account(request)
    form = MessageFilterForm(request.GET or None, lists=PhoneList.objects.filter(account=account))
    data = form.cleaned_data if form.is_valid() else {}
    phone_list = form.lists.get(data.get("list") or "")
    queryset = selectors.messages_for_account(
        account_id=account.pk,
        status=data.get("status") or None,
        phone_list_id=phone_list.pk if phone_list else None,
        created_from=_day_start(data["date_from"]) if data.get("date_from") else None,
        created_until=_day_start(data["date_to"] + timedelta(days=1)) if data.get("date_to") else None,
    )
    query = (data.get("q") or "").strip()
    if query:
        queryset = queryset.filter(Q(to__icontains=query) | Q(ref=query) | Q(public_id=query))
    return form, queryset.order_by("-created_at", "-id")


def _query_without_page(request: PanelRequest) -> str:
    return urlencode([(k, v) for k, v in request.GET.items() if k != "page" and v])


@account_required
def message_log(request: PanelRequest) -> HttpResponse:
    send_form, sent = _send_from_panel(request)
    if sent:
        return sent
    form, queryset = _filtered_messages(request)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = _query_without_page(request)
    context = {"form": form, "page": page, "query": query}
    return render(request, "messaging/messages.html", _with_send_form(request, context, send_form))


@account_required
def message_log_live(request: PanelRequest) -> HttpResponse:
    """The rows of the current page, for live refresh."""
    _form, queryset = _filtered_messages(request)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "messaging/_message_rows.html", {"page": page})


def _message(request: PanelRequest, message_id: str) -> Message:
    try:
        return selectors.get_message_for_account(account_id=current_account(request).pk, message_id=message_id)
    except errors.NotFound:
        raise Http404


def _detail_context(message: Message) -> dict[str, Any]:
    waiting = message.status == Message.Status.QUEUED and message.send_at <= timezone.now()
    online: list[device_selectors.OnlineDevice] = []
    if waiting and message.pinned_device_id is not None:
        online = device_selectors.online_devices(device_id=message.pinned_device_id)
    elif waiting:
        online = device_selectors.online_devices(phone_list_id=message.phone_list_id)
    return {
        "m": message,
        "events": message.events.select_related("device"),
        "ledger": message.ledger_entries.order_by("created_at"),
        "ipn_events": message.ipn_events.order_by("created_at"),
        # A queued message no phone can take now: the page says so while it waits.
        "nobody_online": waiting and not online,
    }


@account_required
def message_detail(request: PanelRequest, message_id: str) -> HttpResponse:
    return render(request, "messaging/message_detail.html", _detail_context(_message(request, message_id)))


@account_required
def message_detail_live(request: PanelRequest, message_id: str) -> HttpResponse:
    return render(request, "messaging/_message_detail_live.html", _detail_context(_message(request, message_id)))


@require_POST
@account_required
def message_cancel(request: PanelRequest, message_id: str) -> HttpResponse:
    try:
        accept.cancel_message(account_id=current_account(request).pk, message_id=message_id)
    except errors.NotFound:
        raise Http404
    except errors.DomainError as exc:
        flash.error(request, exc.message)
    else:
        flash.success(request, "Cancelled; the credit is back on your balance.")
    return redirect("message", message_id=message_id)


@account_required
def inbox(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    lists = {pl.token: pl for pl in PhoneList.objects.filter(account=account)}
    phone_list = lists.get(request.GET.get("list", ""))
    queryset = selectors.inbox_for_account(
        account_id=account.pk, phone_list_id=phone_list.pk if phone_list else None
    ).order_by("-received_at", "-id")
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "lists": lists.values(), "current": phone_list, "query": _query_without_page(request)}
    return render(request, "messaging/inbox.html", context)


# --- Send from the panel -------------------------------------------------------------


class SendForm(forms.Form):
    """One SMS from the panel: the API's accept path (checks, credit, offer), no API key."""

    target = forms.ChoiceField(
        label="Send through", error_messages={"invalid_choice": "Choose one of your lists or phones."}
    )
    to = forms.CharField(
        label="To",
        max_length=numbers.MAX_INPUT_LENGTH,
        error_messages={"required": "Type the number to send to."},
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off", "placeholder": "+393331234567"}),
    )
    msg = forms.CharField(
        label="Text",
        strip=False,
        error_messages={"required": "Type the text of the message."},
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    ref = forms.CharField(
        label="Your reference (optional)",
        required=False,
        max_length=accept.MAX_REF_LENGTH,
        help_text="Comes back in the message's IPN callbacks, e.g. an order number.",
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lists = [(f"list:{pl.token}", pl.name) for pl in PhoneList.objects.filter(account=account).order_by("name")]
        phones = [
            (f"device:{d.public_id}", f"{d.name} ({d.phone_list.name})")
            for d in Device.objects.filter(account=account, removed_at__isnull=True, is_enabled=True)
            .select_related("phone_list")
            .order_by("phone_list__name", "name")
        ]
        groups = [("Every phone of a list", lists), ("One phone", phones)]
        self.fields["target"].choices = [(label, choices) for label, choices in groups if choices]  # type: ignore[attr-defined]
        self.fields["target"].initial = lists[0][0] if lists else None

    def target_ids(self) -> tuple[str | None, str | None]:
        """(list token, device id) of the chosen target; one of them is None."""
        kind, _sep, ident = self.cleaned_data["target"].partition(":")
        return (ident, None) if kind == "list" else (None, ident)


# Parameters at fault that are fields of the form: a refusal's sentence goes beside them.
SEND_FIELDS = ("to", "msg", "ref")


def _send_from_panel(request: PanelRequest) -> tuple[SendForm, HttpResponse | None]:
    """The send form, and on a valid POST the redirect to the new message's live page."""
    account = current_account(request)
    form = SendForm(request.POST if request.method == "POST" else None, account=account)
    if request.method != "POST" or not form.is_valid():
        return form, None
    list_token, device_id = form.target_ids()
    try:
        accepted = accept.accept_message(
            key=subscriptions.account_sender(account_id=account.pk),
            list_token=list_token,
            device_id=device_id,
            to=form.cleaned_data["to"],
            text=form.cleaned_data["msg"],
            ref=form.cleaned_data["ref"],
        )
    except errors.DomainError as exc:
        field = "target" if isinstance(exc, errors.TargetNotFound) else exc.param if exc.param in SEND_FIELDS else None
        form.add_error(field, exc.message)
        return form, None
    message = accepted.message
    parts, cost = message.parts, message.cost
    flash.success(request, f"Accepted: {parts} SMS part{pluralize(parts)}, {cost} credit{pluralize(cost)}.")
    return form, redirect("message", message_id=message.public_id)


def _send_target(request: PanelRequest, value: str) -> dict[str, Any] | None:
    """The chosen target (its kind and name) and its phones online now; None if unknown."""
    account_id = current_account(request).pk
    kind, _sep, ident = value.partition(":")
    try:
        if kind == "device":
            device = device_selectors.get_device_for_account(account_id=account_id, public_id=ident)
            online = device_selectors.online_devices(device_id=device.pk)
            return {"kind": kind, "name": device.name, "online": online}
        phone_list = device_selectors.get_list_for_account(account_id=account_id, token=ident)
    except errors.TargetNotFound:
        return None
    return {
        "kind": "list",
        "name": phone_list.name,
        "online": device_selectors.online_devices(phone_list_id=phone_list.pk),
    }


def _send_preview_context(request: PanelRequest, *, target: str, text: str) -> dict[str, Any]:
    """What a message of `text` to `target` would be: its parts and cost, counted by the
    accept path's own segment code and price, and the target's phones online now."""
    account = current_account(request)
    account.refresh_from_db(fields=["balance", "debt", "price_per_part"])
    counted = segments.count_segments(text)
    per_part = segments.SINGLE_PART if counted.parts == 1 else segments.MULTI_PART
    return {
        "counted": counted,
        "unicode": counted.encoding == segments.UCS2,
        "capacity": counted.parts * per_part[counted.encoding],
        "too_long": counted.parts > accept.MAX_PARTS,
        "max_parts": accept.MAX_PARTS,
        "cost": counted.parts * account.price_per_part,
        "balance": account.balance,
        "debt": account.debt,
        "target": _send_target(request, target),
    }


def _with_send_form(request: PanelRequest, context: dict[str, Any], form: SendForm) -> dict[str, Any]:
    target, text = form["target"].value() or "", form["msg"].value() or ""
    return {**context, "send_form": form, "preview": _send_preview_context(request, target=target, text=text)}


@require_POST
@account_required
def send_preview(request: PanelRequest) -> HttpResponse:
    """The send form's preview, rendered as the user types (POST: the text stays out of
    access logs)."""
    target, text = request.POST.get("target", ""), request.POST.get("msg", "")
    context = {"preview": _send_preview_context(request, target=target, text=text)}
    return render(request, "messaging/_send_preview.html", context)


# --- The virtual phone's messages (its page is the devices app's) -------------------------

TEST_SMS_TEXT = "Test SMS from Phonefleet's virtual phone."


@require_POST
@account_required
def virtual_phone_test(request: PanelRequest) -> JsonResponse:
    """Queues a test SMS pinned to the account's phone `device_id` (to a made-up number of
    its list's country), through the accept path like any send: it costs its credit."""
    account = current_account(request)
    try:
        device = device_selectors.get_device_for_account(
            account_id=account.pk, public_id=request.POST.get("device_id", "")
        )
        accepted = accept.accept_message(
            key=subscriptions.account_sender(account_id=account.pk),
            list_token=None,
            device_id=device.public_id,
            to=numbers.example_number(device.phone_list.default_country),
            text=TEST_SMS_TEXT,
        )
    except errors.DomainError as exc:
        return JsonResponse({"error": exc.message}, status=400)
    message = accepted.message
    url = reverse("message", args=[message.public_id])
    return JsonResponse({"message_id": message.public_id, "url": url, "parts": message.parts, "cost": message.cost})


@account_required
def virtual_phone_offers(request: PanelRequest) -> JsonResponse:
    """What became of messages offered to the virtual phone (`ids`, comma-separated): each
    one's status and the phone holding it, so a card another phone took can say so."""
    ids = [part for part in request.GET.get("ids", "").split(",") if part][:100]
    rows = (
        selectors.messages_for_account(account_id=current_account(request).pk)
        .filter(public_id__in=ids)
        .values_list("public_id", "status", "device__public_id", "device__name")
    )
    found = {
        pid: {"status": status, "device_id": dev or "", "device_name": name or ""} for pid, status, dev, name in rows
    }
    return JsonResponse({"messages": found})


# --- Dashboard ------------------------------------------------------------------

CHART_GROUPS = {
    "ok": (Message.Status.SENT, Message.Status.DELIVERED),
    "open": (Message.Status.QUEUED, Message.Status.ASSIGNED),
    "bad": (Message.Status.FAILED, Message.Status.EXPIRED, Message.Status.CANCELLED),
}
CHART_HEIGHT = 120


def _week_chart(account: Account) -> list[dict[str, Any]]:
    """Messages per day for the last 7 days, stacked by outcome, scaled for an inline SVG."""
    today = timezone.now().date()
    start = today - timedelta(days=6)
    rows = (
        Message.objects.filter(account=account, created_at__date__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
    )
    days = {start + timedelta(days=i): {"ok": 0, "open": 0, "bad": 0} for i in range(7)}
    for row in rows:
        group = next(name for name, statuses in CHART_GROUPS.items() if row["status"] in statuses)
        days[row["day"]][group] += row["n"]
    peak = max([sum(counts.values()) for counts in days.values()] + [1])
    chart = []
    for i, (day, counts) in enumerate(days.items()):
        bars, y = [], CHART_HEIGHT
        for group in ("ok", "open", "bad"):
            height = round(counts[group] * CHART_HEIGHT / peak)
            y -= height
            bars.append({"group": group, "y": y, "height": height})
        chart.append({"day": day, "x": 20 + i * 70, "total": sum(counts.values()), "bars": bars, **counts})
    return chart


def _dashboard_context(account: Account) -> dict[str, Any]:
    account.refresh_from_db(fields=["balance"])
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = {
        row["status"]: row["n"]
        for row in Message.objects.filter(account=account, created_at__gte=start)
        .values("status")
        .annotate(n=Count("id"))
    }
    return {
        "balance": account.balance,
        "online": Device.objects.online().filter(account=account).count(),
        "phones": Device.objects.filter(account=account, removed_at__isnull=True).count(),
        "today": [(status.label, status.value, today.get(status.value, 0)) for status in Message.Status],
        "today_total": sum(today.values()),
        "chart": _week_chart(account),
        "chart_height": CHART_HEIGHT,
    }


@account_required
def dashboard(request: PanelRequest) -> HttpResponse:
    send_form, sent = _send_from_panel(request)
    if sent:
        return sent
    account = current_account(request)
    context = _with_send_form(request, _dashboard_context(account), send_form)
    context["recent"] = Message.objects.filter(account=account).select_related("device").order_by("-created_at")[:8]
    context["has_lists"] = PhoneList.objects.filter(account=account).exists()
    return render(request, "messaging/dashboard.html", context)


@account_required
def dashboard_live(request: PanelRequest) -> HttpResponse:
    return render(request, "messaging/_dashboard_live.html", _dashboard_context(current_account(request)))


# --- Developers -----------------------------------------------------------------------


def _snippet_context(request: PanelRequest, key: ApiKey | None = None) -> snippets.Context:
    return selectors.snippet_context(account_id=current_account(request).pk, base_url=base_url_for(request), key=key)


@account_required
def developers(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    rows = ApiKey.objects.filter(account=account, revoked_at__isnull=True).select_related("default_list")
    context = _snippet_context(request)
    return render(
        request,
        "messaging/developers.html",
        {
            "operations": [*snippets.OPERATIONS, snippets.RECEIVER],
            "keys": rows,
            "base_url": context.base_url,
            "list_token": context.list_token,
        },
    )


@account_required
def developers_code(request: PanelRequest, slug: str) -> HttpResponse:
    """The CODE dialog's content: one operation in every language (an HTML fragment)."""
    account = current_account(request)
    op = snippets.OPERATIONS_BY_SLUG.get(slug)
    if op is None:
        raise Http404
    key = None
    if request.GET.get("key", "").isdigit():
        try:
            key = account_selectors.get_key_for_account(account_id=account.pk, pk=int(request.GET["key"]))
        except errors.NotFound:
            raise Http404
    context = _snippet_context(request, key)
    return render(request, "messaging/_code.html", {"op": op, "key": key, "examples": snippets.examples(op, context)})


# --- Verifications ----------------------------------------------------------------------


class VerificationPolicyForm(forms.Form):
    countries = forms.CharField(
        required=False,
        max_length=400,
        label="Countries",
        widget=forms.TextInput(attrs={"placeholder": "the list's country"}),
        help_text="Two-letter codes, e.g. IT, CH. Empty: only the country of the list a code goes through.",
    )
    per_hour = forms.IntegerField(min_value=1, max_value=100_000, label="Verifications an hour (this key)")
    number_interval_seconds = forms.IntegerField(
        min_value=0, max_value=3600, label="Seconds between two codes to one number"
    )
    number_per_hour = forms.IntegerField(min_value=1, max_value=100, label="Codes an hour to one number")


def _policy_form(key: ApiKey, data: Any = None) -> VerificationPolicyForm:
    limits = verify.limits_for_key(api_key_id=key.pk)
    initial = {
        "countries": ", ".join(limits.countries),
        "per_hour": limits.per_hour,
        "number_interval_seconds": limits.number_interval_seconds,
        "number_per_hour": limits.number_per_hour,
    }
    return VerificationPolicyForm(data, initial=initial, prefix=f"key{key.pk}")


def _verifications_page(request: PanelRequest, forms_by_key: dict[int, VerificationPolicyForm]) -> HttpResponse:
    account = current_account(request)
    keys = list(ApiKey.objects.filter(account=account, revoked_at__isnull=True).order_by("created_at"))
    since = timezone.now() - timedelta(hours=24)
    counts = (
        Verification.objects.filter(account=account, created_at__gte=since)
        .values("api_key_id", "status")
        .annotate(n=Count("pk"))
    )
    by_key: dict[int | None, dict[str, int]] = {}
    for row in counts:
        by_key.setdefault(row["api_key_id"], {})[row["status"]] = row["n"]
    chosen = request.GET.get("key", "")
    rows = Verification.objects.filter(account=account).select_related("api_key", "message")
    if chosen.isdigit():
        rows = rows.filter(api_key_id=int(chosen))
    page = Paginator(rows.prefetch_related("checks").order_by("-created_at", "-pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    panels = [
        {"key": key, "form": forms_by_key.get(key.pk) or _policy_form(key), "counts": by_key.get(key.pk, {})}
        for key in keys
    ]
    context = {"panels": panels, "page": page, "chosen": chosen, "query": _query_without_page(request)}
    return render(request, "messaging/verifications.html", context)


@account_required
def verifications(request: PanelRequest) -> HttpResponse:
    """Every key's verifications of the last day by outcome, its limits, and the newest
    verifications with each check's outcome."""
    return _verifications_page(request, {})


@require_POST
@account_required
def verification_policy(request: PanelRequest, pk: int) -> HttpResponse:
    """Saves one key's limits against SMS pumping."""
    try:
        key = account_selectors.get_key_for_account(account_id=current_account(request).pk, pk=pk)
    except errors.NotFound:
        raise Http404
    form = _policy_form(key, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            verify.set_verification_policy(
                api_key=key,
                countries=re.split(r"[\s,;]+", data["countries"]),
                per_hour=data["per_hour"],
                number_interval_seconds=data["number_interval_seconds"],
                number_per_hour=data["number_per_hour"],
            )
        except errors.DomainError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        else:
            flash.success(request, f"Saved the verification limits of “{key.name}”. They apply from the next code.")
            return redirect("verifications")
    return _verifications_page(request, {key.pk: form})


STATUS_CODES = (
    (1, "ok_ip", "Accepted; the caller's IP is on the key's allow-list.", 200),
    (2, "ok_over_ip", "Accepted; the key allows any IP.", 200),
    (3, "api_key_error", "Missing, wrong or revoked API key.", 401),
    (4, "unauthorized_ip", "The caller's IP is not on the key's allow-list.", 403),
    (5, "param_error", "Any other invalid parameter (bad number, bad ttl, rate limit 429, …).", 400),
    (6, "token_or_id_device_error", "Unknown list token, device id or message id, or not this account's.", 400),
    (7, "missing_to_number", "`to` missing or empty.", 400),
    (8, "missing_msg", "`msg` missing or empty.", 400),
    (9, "balance_error", "Not enough credit for all parts (or the daily cap is reached).", 402),
)


@account_required
def api_guide(request: PanelRequest) -> HttpResponse:
    context = _snippet_context(request)
    receiver = snippets.render_all(snippets.RECEIVER, context)
    return render(
        request,
        "messaging/api_guide.html",
        {
            "status_codes": STATUS_CODES,
            "base_url": context.base_url,
            "list_token": context.list_token,
            "send_curl": snippets.render(snippets.OPERATIONS_BY_SLUG["send"], "curl", context),
            "receivers": [(snippets.LANGUAGES[lang], receiver[lang]) for lang in ("python", "php", "node", "go")],
        },
    )


# --- List subscribers (forms on the list page) ---------------------------------------------


class SubscriberAddForm(forms.Form):
    numbers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=400_000,
        help_text="One number or many: one a line, or separated by commas. National numbers use the list's country.",
    )


class BroadcastForm(forms.Form):
    msg = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), strip=False, label="Text")


class SubscriptionRepliesForm(forms.Form):
    confirm_subscriptions = forms.BooleanField(required=False, label="Reply when someone joins or leaves by SMS")
    subscribe_reply = forms.CharField(required=False, max_length=subscriptions.MAX_REPLY_LENGTH, label="On OK")
    unsubscribe_reply = forms.CharField(required=False, max_length=subscriptions.MAX_REPLY_LENGTH, label="On DEL")


# --- A phone's caps (its own, and its use of them: counted from messaging's timeline) ----


class PhoneCapsForm(forms.Form):
    """A phone's own caps; empty: its list's apply."""

    minute = columns.form_field(Device, "rate_limit_per_minute", required=False, min_value=1, label="SMS a minute")
    hour = columns.form_field(Device, "rate_limit_per_hour", required=False, min_value=1, label="SMS an hour")
    day = columns.form_field(Device, "rate_limit_per_day", required=False, min_value=1, label="SMS a day")


@account_required
def phone_caps(request: PanelRequest, public_id: str) -> HttpResponse:
    """The phone's caps (its own or its list's) beside its use of each; sets its own."""
    try:
        device = device_selectors.get_device_for_account(account_id=current_account(request).pk, public_id=public_id)
    except errors.TargetNotFound:
        raise Http404
    own = {name: getattr(device, field) for name, field in CAP_FIELDS.items()}
    form = PhoneCapsForm(request.POST or None, initial=own)
    if request.method == "POST" and form.is_valid():
        try:
            device_services.set_device_caps(device=device, **form.cleaned_data)
        except errors.DomainError as exc:
            form.add_error(None, exc.message)
        else:
            flash.success(request, f"Saved the caps of “{device.name}”.")
            return redirect("phone-caps", public_id=device.public_id)
    caps = selectors.caps_of_devices([device])[device.pk]
    rows = [
        {"window": name, "limit": caps[name]["limit"], "used": caps[name]["used"], "own": own[name] is not None}
        for name in CAP_FIELDS
    ]
    return render(request, "messaging/phone_caps.html", {"device": device, "form": form, "caps": rows})


def _subscriber_list(request: PanelRequest, token: str) -> PhoneList:
    try:
        return device_selectors.get_list_for_account(account_id=current_account(request).pk, token=token)
    except errors.TargetNotFound:
        raise Http404


def _to_subscribers(phone_list: PhoneList) -> HttpResponse:
    return redirect(f"{reverse('list', args=[phone_list.token])}#subscribers")


def _first_form_error(form: forms.Form) -> str:
    return str(next(iter(form.errors.values()))[0])


@require_POST
@account_required
def list_subscribers_add(request: PanelRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    form = SubscriberAddForm(request.POST)
    if not form.is_valid():
        flash.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    given = [item.strip() for item in re.split(r"[\n\r,;]+", form.cleaned_data["numbers"]) if item.strip()]
    try:
        result = subscriptions.import_subscribers(phone_list=phone_list, numbers=given, source=Subscriber.Source.PANEL)
    except errors.DomainError as exc:
        flash.error(request, exc.message)
        return _to_subscribers(phone_list)
    flash.success(request, f"Added {len(result.added)}; {len(result.already)} already subscribed.")
    for row, text, message in result.errors[:10]:
        flash.error(request, f"Line {row} ({text}): {message}")
    return _to_subscribers(phone_list)


@require_POST
@account_required
def list_subscriber_remove(request: PanelRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    try:
        change = subscriptions.unsubscribe(phone_list=phone_list, number=request.POST.get("number", ""))
    except errors.DomainError as exc:
        flash.error(request, exc.message)
    else:
        if change.changed:
            flash.success(request, f"Removed {change.number}.")
        else:
            flash.error(request, f"{change.number} is not subscribed.")
    return _to_subscribers(phone_list)


@require_POST
@account_required
def list_broadcast(request: PanelRequest, token: str) -> HttpResponse:
    """One text to every current subscriber (the API's broadcast, without an API key)."""
    phone_list = _subscriber_list(request, token)
    form = BroadcastForm(request.POST)
    if not form.is_valid():
        flash.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    sender = subscriptions.account_sender(account_id=phone_list.account_id)
    try:
        result = subscriptions.broadcast(key=sender, phone_list=phone_list, text=form.cleaned_data["msg"])
    except errors.DomainError as exc:
        flash.error(request, exc.message)
        return _to_subscribers(phone_list)
    flash.success(
        request,
        f"Queued {len(result.messages)} messages ({result.cost} credits), batch {result.batch_id}.",
    )
    return redirect(f"{reverse('messages')}?{urlencode({'list': phone_list.token})}")


@require_POST
@account_required
def list_subscription_replies(request: PanelRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    form = SubscriptionRepliesForm(request.POST)
    if not form.is_valid():
        flash.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    try:
        subscriptions.update_reply_settings(phone_list=phone_list, **form.cleaned_data)
    except errors.DomainError as exc:
        flash.error(request, exc.message)
    else:
        state = "on" if phone_list.confirm_subscriptions else "off"
        flash.success(request, f"Confirmation replies are {state}.")
    return _to_subscribers(phone_list)

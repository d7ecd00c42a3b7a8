"""Panel pages of the accounts app: sign-in, dashboard, API keys, developers, credit, and
the subscriber forms of the list page (add, remove, broadcast, confirmation replies).

Every page is scoped to the signed-in user's account; an id of another account's
object is simply not found (404).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from accounts import errors, services
from accounts.forms import ApiKeyForm, ThrottledLoginForm
from accounts.models import Account, ApiKey
from devices import selectors as device_selectors
from devices.models import PRESENCE_TTL, Device, PhoneList, Subscriber
from ipn.models import IpnEndpoint, IpnEvent
from messaging.lib import snippets
from messaging.models import Message
from messaging.services import subscriptions

View = Callable[..., HttpResponse]


def account_required(view: View) -> View:
    """Signed in, with an account: the panel is for customers (operators use the admin)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = getattr(request.user, "account", None)
        if account is None:
            return redirect("admin:index")
        request.account = account  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def current_account(request: HttpRequest) -> Account:
    return request.account  # type: ignore[attr-defined,no-any-return]


class LoginView(auth_views.LoginView):
    form_class = ThrottledLoginForm
    redirect_authenticated_user = True


# --- Dashboard ------------------------------------------------------------------

CHART_GROUPS = {
    "ok": (Message.Status.SENT, Message.Status.DELIVERED),
    "open": (Message.Status.QUEUED, Message.Status.ASSIGNED),
    "bad": (Message.Status.FAILED, Message.Status.EXPIRED, Message.Status.CANCELLED),
}
CHART_HEIGHT = 120


def _online_devices(account: Account) -> Any:
    return Device.objects.filter(
        account=account,
        is_enabled=True,
        removed_at__isnull=True,
        is_connected=True,
        last_seen_at__gte=timezone.now() - PRESENCE_TTL,
    )


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
        "online": _online_devices(account).count(),
        "phones": Device.objects.filter(account=account, removed_at__isnull=True).count(),
        "today": [(status.label, status.value, today.get(status.value, 0)) for status in Message.Status],
        "today_total": sum(today.values()),
        "chart": _week_chart(account),
        "chart_height": CHART_HEIGHT,
    }


@account_required
def dashboard(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    context = _dashboard_context(account)
    context["recent"] = Message.objects.filter(account=account).select_related("device").order_by("-created_at")[:8]
    context["has_lists"] = PhoneList.objects.filter(account=account).exists()
    return render(request, "panel/dashboard.html", context)


@account_required
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(request, "panel/_dashboard_live.html", _dashboard_context(current_account(request)))


# --- API keys ---------------------------------------------------------------------


def _get_key_for_account(account: Account, pk: int) -> ApiKey:
    return get_object_or_404(ApiKey.objects.select_related("default_list"), account=account, pk=pk)


def _key_initial(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "ip_mode": "only" if key.allowed_ips else "any",
        "allowed_ips": "\n".join(key.allowed_ips),
        "cors_origins": "\n".join(key.cors_origins),
        "default_list": key.default_list_id,
        "rate_limit_per_minute": key.rate_limit_per_minute,
    }


@account_required
def keys(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    form = ApiKeyForm(request.POST or None, account=account)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            key, secret = services.create_api_key(
                account=account,
                name=data["name"],
                allowed_ips=data["allowed_ip_list"],
                cors_origins=data["cors_origin_list"],
                default_list=data["default_list"],
            )
            if data["rate_limit_per_minute"]:
                services.update_api_key(key=key, rate_limit_per_minute=data["rate_limit_per_minute"])
        except errors.DomainError as exc:
            form.add_error(None, exc.message)
        else:
            # The secret is shown in this answer only: it is never stored or put in the session.
            send = snippets.OPERATIONS_BY_SLUG["send"]
            context = snippets.with_key(_snippet_context(request, account, key), secret)
            response = render(
                request,
                "panel/key_created.html",
                {"key": key, "secret": secret, "examples": _examples(send, context)},
            )
            patch_cache_control(response, no_store=True)  # the secret must not land in any cache
            return response
    rows = ApiKey.objects.filter(account=account).select_related("default_list").order_by("revoked_at", "-created_at")
    return render(request, "panel/keys.html", {"form": form, "keys": rows, "client_ip": request.client_ip})  # type: ignore[attr-defined]


@account_required
def key_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = current_account(request)
    key = _get_key_for_account(account, pk)
    form = ApiKeyForm(request.POST or None, account=account, initial=_key_initial(key))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_api_key(
                key=key,
                name=data["name"],
                allowed_ips=data["allowed_ip_list"],
                cors_origins=data["cors_origin_list"],
                default_list=data["default_list"],
                rate_limit_per_minute=data["rate_limit_per_minute"],
            )
        except errors.DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Saved “{key.name}”. It applies from the next request.")
            return redirect("key", pk=key.pk)
    context = {"key": key, "form": form, "client_ip": request.client_ip}  # type: ignore[attr-defined]
    return render(request, "panel/key_detail.html", context)


@require_POST
@account_required
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = _get_key_for_account(current_account(request), pk)
    services.revoke_api_key(key=key)
    messages.success(request, f"Revoked “{key.name}”: calls with it now get status code 3.")
    return redirect("keys")


# --- Developers -----------------------------------------------------------------------


def base_url_for(request: HttpRequest) -> str:
    return settings.SITE_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")


def _snippet_context(request: HttpRequest, account: Account, key: ApiKey | None = None) -> snippets.Context:
    """The account's real values for the examples (never a key's secret: it is not stored)."""
    phone_list = (key.default_list if key else None) or PhoneList.objects.filter(account=account).first()
    message = Message.objects.filter(account=account).order_by("-created_at").only("public_id").first()
    device = Device.objects.filter(account=account, removed_at__isnull=True).only("public_id").first()
    endpoint = IpnEndpoint.objects.filter(account=account).only("secret", "url").first()
    event = IpnEvent.objects.filter(account=account).order_by("-created_at").only("webhook_id").first()
    values: dict[str, Any] = {"base_url": base_url_for(request)}
    if phone_list:
        values["list_token"] = phone_list.token
    if message:
        values["message_id"] = message.public_id
    if device:
        values["device_id"] = device.public_id
    if event:
        values["webhook_id"] = event.webhook_id
    if endpoint and endpoint.secret:
        values["ipn_secret"] = endpoint.secret
    if endpoint and endpoint.url:
        values["ipn_url"] = endpoint.url
    return snippets.Context(**values)


def _examples(op: snippets.Operation, context: snippets.Context) -> list[dict[str, str]]:
    return [
        {"lang": lang, "label": snippets.LANGUAGES[lang], "code": code}
        for lang, code in snippets.render_all(op, context).items()
    ]


@account_required
def developers(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    rows = ApiKey.objects.filter(account=account, revoked_at__isnull=True).select_related("default_list")
    context = _snippet_context(request, account)
    return render(
        request,
        "panel/developers.html",
        {
            "operations": [*snippets.OPERATIONS, snippets.RECEIVER],
            "keys": rows,
            "base_url": context.base_url,
            "list_token": context.list_token,
        },
    )


@account_required
def developers_code(request: HttpRequest, slug: str) -> HttpResponse:
    """The CODE dialog's content: one operation in every language (an HTML fragment)."""
    account = current_account(request)
    op = snippets.OPERATIONS_BY_SLUG.get(slug)
    if op is None:
        raise Http404
    key = None
    if request.GET.get("key", "").isdigit():
        key = _get_key_for_account(account, int(request.GET["key"]))
    context = _snippet_context(request, account, key)
    return render(request, "panel/_code.html", {"op": op, "key": key, "examples": _examples(op, context)})


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
def api_guide(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    context = _snippet_context(request, account)
    receiver = snippets.render_all(snippets.RECEIVER, context)
    return render(
        request,
        "panel/api_guide.html",
        {
            "status_codes": STATUS_CODES,
            "base_url": context.base_url,
            "list_token": context.list_token,
            "send_curl": snippets.render(snippets.OPERATIONS_BY_SLUG["send"], "curl", context),
            "receivers": [(snippets.LANGUAGES[lang], receiver[lang]) for lang in ("python", "php", "node", "go")],
        },
    )


# --- Credit -----------------------------------------------------------------------------


@account_required
def credit(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    account.refresh_from_db(fields=["balance"])
    entries = account.ledger.select_related("message").order_by("-created_at", "-id")
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "panel/credit.html", {"page": page, "balance": account.balance})


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


def _subscriber_list(request: HttpRequest, token: str) -> PhoneList:
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
def list_subscribers_add(request: HttpRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    form = SubscriberAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    given = [item.strip() for item in re.split(r"[\n\r,;]+", form.cleaned_data["numbers"]) if item.strip()]
    try:
        result = subscriptions.import_subscribers(phone_list=phone_list, numbers=given, source=Subscriber.Source.PANEL)
    except errors.DomainError as exc:
        messages.error(request, exc.message)
        return _to_subscribers(phone_list)
    messages.success(request, f"Added {len(result.added)}; {len(result.already)} already subscribed.")
    for row, text, message in result.errors[:10]:
        messages.error(request, f"Line {row} ({text}): {message}")
    return _to_subscribers(phone_list)


@require_POST
@account_required
def list_subscriber_remove(request: HttpRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    try:
        change = subscriptions.unsubscribe(phone_list=phone_list, number=request.POST.get("number", ""))
    except errors.DomainError as exc:
        messages.error(request, exc.message)
    else:
        if change.changed:
            messages.success(request, f"Removed {change.number}.")
        else:
            messages.error(request, f"{change.number} is not subscribed.")
    return _to_subscribers(phone_list)


@require_POST
@account_required
def list_broadcast(request: HttpRequest, token: str) -> HttpResponse:
    """One text to every current subscriber (the API's broadcast, without an API key)."""
    phone_list = _subscriber_list(request, token)
    form = BroadcastForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    sender = subscriptions.account_sender(account_id=phone_list.account_id)
    try:
        result = subscriptions.broadcast(key=sender, phone_list=phone_list, text=form.cleaned_data["msg"])
    except errors.DomainError as exc:
        messages.error(request, exc.message)
        return _to_subscribers(phone_list)
    messages.success(
        request,
        f"Queued {len(result.messages)} messages ({result.cost} credits), batch {result.batch_id}.",
    )
    return redirect(f"{reverse('messages')}?{urlencode({'list': phone_list.token})}")


@require_POST
@account_required
def list_subscription_replies(request: HttpRequest, token: str) -> HttpResponse:
    phone_list = _subscriber_list(request, token)
    form = SubscriptionRepliesForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_form_error(form))
        return _to_subscribers(phone_list)
    try:
        subscriptions.update_reply_settings(phone_list=phone_list, **form.cleaned_data)
    except errors.DomainError as exc:
        messages.error(request, exc.message)
    else:
        state = "on" if phone_list.confirm_subscriptions else "off"
        messages.success(request, f"Confirmation replies are {state}.")
    return _to_subscribers(phone_list)

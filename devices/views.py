"""Panel pages of the devices app: lists (how a phone joins, settings), phones, the virtual
phone; and the reference agent as one file a phone downloads."""

from __future__ import annotations

import csv
import functools
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import columns, errors
from accounts.views import (
    PanelRequest,
    account_required,
    base_url_for,
    current_account,
    hand_over_secret,
    take_secret,
)
from devices import selectors, services
from devices.lib import phone_setup
from devices.models import Device, PhoneList
from devices.smsgate import services as smsgate


def _get_list_for_account(request: PanelRequest, token: str) -> PhoneList:
    try:
        return selectors.get_list_for_account(account_id=current_account(request).pk, token=token)
    except errors.TargetNotFound:
        raise Http404


def _get_device_for_account(request: PanelRequest, public_id: str) -> Device:
    try:
        return selectors.get_device_for_account(account_id=current_account(request).pk, public_id=public_id)
    except errors.TargetNotFound:
        raise Http404


def _back(request: PanelRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(target if target and safe else fallback)


# --- Lists ---------------------------------------------------------------------------


class ListForm(forms.Form):
    name = forms.CharField(max_length=100)
    # Checked by the service (a country the numbering plans know), which says why in words.
    default_country = forms.CharField(max_length=20, initial="IT", help_text="For national numbers, e.g. IT")
    # Bounded by what their columns hold (accounts/columns.py): never wrapped by the database.
    rate_limit_per_minute = columns.form_field(
        PhoneList,
        "rate_limit_per_minute",
        required=False,
        min_value=1,
        label="Per-phone limit (SMS a minute)",
        help_text="Empty: no limit",
    )


class ListSettingsForm(ListForm):
    rate_limit_per_hour = columns.form_field(
        PhoneList,
        "rate_limit_per_hour",
        required=False,
        min_value=1,
        label="Per-phone cap (SMS an hour)",
        help_text="Empty: no cap. A phone at a cap gets no work until it is under it again",
    )
    rate_limit_per_day = columns.form_field(
        PhoneList,
        "rate_limit_per_day",
        required=False,
        min_value=1,
        label="Per-phone cap (SMS a day)",
        help_text="Empty: no cap. Counted over the last 24 hours; a phone may have its own caps",
    )
    lease_seconds = columns.form_field(
        PhoneList,
        "lease_seconds",
        min_value=1,
        label="Lease (seconds)",
        help_text="How long a phone may hold a message before it is re-offered",
    )
    default_ttl_seconds = columns.form_field(
        PhoneList,
        "default_ttl_seconds",
        min_value=1,
        label="Message time-to-live (seconds)",
        help_text="Unsent messages then expire and are refunded",
    )
    verify_template = forms.CharField(
        required=False,  # left empty: unchanged
        max_length=300,
        strip=False,
        label="Verification text",
        help_text="The SMS of a verification code (POST /api/v1/verify) when the call gives none; {code} is the code",
    )


@account_required
def lists(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    form = ListForm(request.POST or None, initial={"default_country": "IT"})
    if request.method == "POST" and form.is_valid():
        try:
            phone_list = services.create_list(
                account=account,
                name=form.cleaned_data["name"],
                default_country=form.cleaned_data["default_country"],
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            )
        except errors.DomainError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        else:
            messages.success(request, f"Created “{phone_list.name}”. Join phones to it with the PIN below.")
            return redirect("list", token=phone_list.token)
    rows = PhoneList.objects.filter(account=account).with_phone_counts()
    return render(request, "devices/lists.html", {"lists": rows, "form": form})


def _phone_link(phone_list: PhoneList) -> str:
    return f"{reverse('virtual-phone')}?{urlencode({'pin': phone_list.pin})}"


def _phone_setup(request: PanelRequest, phone_list: PhoneList) -> dict[str, Any]:
    """How a real phone joins the list from here: the Termux command (and its QR code) and
    the SMSGate app's settings, or, when this address is the machine's own, what to set so
    that phones can reach the server."""
    base = base_url_for(request)
    command = phone_setup.termux_command(base_url=base, pin=phone_list.pin)
    reachable = not phone_setup.is_loopback(base)
    context: dict[str, Any] = {
        "base_url": base,
        "reachable": reachable,
        "termux_command": command,
        "termux_restart": f"python {phone_setup.AGENT_FILE} {phone_setup.agent_arguments(base_url=base)}",
        "mobile_api_url": f"{base}/api/mobile/v1",
        "https": base.startswith("https://"),
        "qr_svg": segno.make(command, error="l").svg_inline(scale=3, dark="#111827") if reachable else "",
    }
    if not reachable:
        context["lan"] = {
            "address": phone_setup.lan_address() or "192.168.1.10",
            "port": urlsplit(base).port or 80,
            "site_url_set": bool(settings.SITE_URL),
            # A fresh key to paste: a server others reach is production, which needs one.
            "secret_key": secrets.token_urlsafe(50),
        }
    return context


@account_required
def list_detail(request: PanelRequest, token: str) -> HttpResponse:
    phone_list = _get_list_for_account(request, token)
    form = ListSettingsForm(
        request.POST or None,
        initial={
            "name": phone_list.name,
            "default_country": phone_list.default_country,
            "rate_limit_per_minute": phone_list.rate_limit_per_minute,
            "rate_limit_per_hour": phone_list.rate_limit_per_hour,
            "rate_limit_per_day": phone_list.rate_limit_per_day,
            "lease_seconds": phone_list.lease_seconds,
            "default_ttl_seconds": phone_list.default_ttl_seconds,
            "verify_template": phone_list.verify_template,
        },
    )
    if request.method == "POST" and form.is_valid():
        try:
            changes = {k: v for k, v in form.cleaned_data.items() if not (k == "verify_template" and not v)}
            services.update_list_settings(phone_list=phone_list, **changes)
        except errors.DomainError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        else:
            messages.success(request, "Saved. Phones get the new settings when they next connect.")
            return redirect("list", token=phone_list.token)
    new_token = take_secret(request, name=f"mobile-token:{phone_list.token}")
    return _render_list(request, phone_list, form, **({"new_mobile_token": new_token} if new_token else {}))


def _render_list(request: PanelRequest, phone_list: PhoneList, form: ListSettingsForm, **extra: Any) -> HttpResponse:
    link = _phone_link(phone_list)
    subscribed = phone_list.subscribers.filter(unsubscribed_at__isnull=True)
    context = {
        "list": phone_list,
        "form": form,
        "phone_link": link,
        "setup": _phone_setup(request, phone_list),
        "devices": _devices(request, phone_list=phone_list),
        "subscribers": subscribed.order_by("-subscribed_at")[:50],
        "subscriber_count": subscribed.count(),
        "mobile_tokens": smsgate.list_private_tokens(phone_list=phone_list),
        **extra,
    }
    response = render(request, "devices/list_detail.html", context)
    if extra:
        patch_cache_control(response, no_store=True)  # it shows a new secret
    return response


@require_POST
@account_required
def list_mobile_token_create(request: PanelRequest, token: str) -> HttpResponse:
    """A new private token for SMSGate Android phones, shown once on the list's page."""
    phone_list = _get_list_for_account(request, token)
    _row, secret = smsgate.create_enrolment_token(phone_list=phone_list)
    hand_over_secret(request, name=f"mobile-token:{phone_list.token}", secret=secret)
    return redirect(f"{reverse('list', args=[phone_list.token])}#android")


@require_POST
@account_required
def list_mobile_token_revoke(request: PanelRequest, token: str, pk: int) -> HttpResponse:
    phone_list = _get_list_for_account(request, token)
    found = next((row for row in smsgate.list_private_tokens(phone_list=phone_list) if row.pk == pk), None)
    if found is None:
        raise Http404
    smsgate.revoke_enrolment_token(token=found)
    messages.success(request, "Revoked: it no longer signs up new phones (phones already joined keep working).")
    return redirect("list", token=phone_list.token)


@account_required
def list_subscribers_csv(request: PanelRequest, token: str) -> HttpResponse:
    """Every subscriber of the list, current and former, as CSV."""
    phone_list = _get_list_for_account(request, token)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="subscribers-{phone_list.token}.csv"'
    writer = csv.writer(response)
    writer.writerow(["number", "source", "subscribed_at", "unsubscribed_at"])
    for row in phone_list.subscribers.order_by("subscribed_at").iterator():
        left = row.unsubscribed_at.isoformat() if row.unsubscribed_at else ""
        # A leading = + - @ would make a spreadsheet run it as a formula.
        number = f"'{row.number}" if row.number[:1] in ("=", "+", "-", "@") else row.number
        writer.writerow([number, row.source, row.subscribed_at.isoformat(), left])
    return response


@require_POST
@account_required
def list_regenerate_pin(request: PanelRequest, token: str) -> HttpResponse:
    phone_list = _get_list_for_account(request, token)
    services.regenerate_pin(phone_list=phone_list)
    messages.success(request, "New PIN. Phones already joined keep working; the old PIN no longer joins new ones.")
    return redirect("list", token=phone_list.token)


# --- Phones ----------------------------------------------------------------------------


def _devices(request: PanelRequest, phone_list: PhoneList | None = None) -> list[Device]:
    queryset = (
        Device.objects.with_online()
        .select_related("phone_list")
        .filter(account=current_account(request), removed_at__isnull=True)
    )
    if phone_list is not None:
        queryset = queryset.filter(phone_list=phone_list)
    return list(queryset.order_by("phone_list__name", "created_at"))


@account_required
def phones(request: PanelRequest) -> HttpResponse:
    return render(request, "devices/phones.html", {"devices": _devices(request)})


@account_required
def phones_live(request: PanelRequest) -> HttpResponse:
    """The phones table alone, for live refresh (all phones, or one list's with ?list=)."""
    token = request.GET.get("list", "")
    phone_list = _get_list_for_account(request, token) if token else None
    back = reverse("list", args=[token]) if phone_list else reverse("phones")
    context = {"devices": _devices(request, phone_list=phone_list), "back": back}
    return render(request, "devices/_phones_table.html", context)


@require_POST
@account_required
def phone_rename(request: PanelRequest, public_id: str) -> HttpResponse:
    device = _get_device_for_account(request, public_id)
    try:
        services.rename_device(device=device, name=request.POST.get("name", ""))
    except errors.DomainError as exc:
        messages.error(request, exc.message)
    return _back(request, reverse("phones"))


# A disabled phone was disconnected and stopped trying: enabling it lets it back, but only
# the phone itself can reconnect.
RECONNECT: dict[str, str] = {
    Device.Kind.WEBSOCKET: "It must reconnect: the agent stopped when the phone was disabled, so start it again on"
    " the phone (it keeps its token).",
    Device.Kind.BROWSER: "It must reconnect: reload its virtual phone page.",
    Device.Kind.SMSGATE: "It must reconnect, but the SMSGate app signs up again as a new phone when it is disabled:"
    " if a newer entry of it is in the list, remove this one; otherwise restart the app.",
}


@require_POST
@account_required
def phone_disable(request: PanelRequest, public_id: str) -> HttpResponse:
    device = _get_device_for_account(request, public_id)
    if device.is_enabled:
        services.disable_device(device=device)
        messages.success(request, f"Disabled “{device.name}”: it is disconnected and gets no messages.")
    else:
        services.enable_device(device=device)
        messages.success(request, f"Enabled “{device.name}” again. {RECONNECT[device.kind]}")
    return _back(request, reverse("phones"))


@require_POST
@account_required
def phone_remove(request: PanelRequest, public_id: str) -> HttpResponse:
    device = _get_device_for_account(request, public_id)
    services.remove_device(device=device)
    messages.success(request, f"Removed “{device.name}”.")
    return _back(request, reverse("phones"))


# --- The reference agent, for phones ----------------------------------------------------


@functools.cache
def _agent_zipapp() -> bytes:
    return phone_setup.agent_zipapp(Path(settings.BASE_DIR) / "agent")


def agent_download(request: HttpRequest) -> HttpResponse:
    """The reference agent (agent/) as one Python zip application, for phones to fetch
    with curl: its code is public, so no sign-in."""
    response = HttpResponse(_agent_zipapp(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{phone_setup.AGENT_FILE}"'
    return response


# --- Virtual phone ---------------------------------------------------------------------


@account_required
def virtual_phone(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    lists = list(PhoneList.objects.filter(account=account))
    # The link's PIN, or the first list's: a newcomer joins with one click.
    pin = request.GET.get("pin", "") or (lists[0].pin if lists else "")
    return render(request, "devices/virtual_phone.html", {"pin": pin, "lists": lists})


@require_POST
@account_required
def virtual_phone_join(request: PanelRequest) -> JsonResponse:
    """Joins a browser phone to one of the account's own lists by its PIN (so the PIN
    cannot be used to guess other accounts' lists); answers like the enrol API."""
    pin = request.POST.get("pin", "").strip()
    phone_list = PhoneList.objects.filter(account=current_account(request), pin=pin).first() if pin else None
    if phone_list is None:
        return JsonResponse({"error": "No list of yours has that PIN."}, status=403)
    name = request.POST.get("name", "").strip() or "Virtual phone"
    device, token = services.create_device(phone_list=phone_list, name=name, model="Browser", kind=Device.Kind.BROWSER)
    body: dict[str, Any] = {
        "device_id": device.public_id,
        "device_token": token,
        "list": phone_list.token,
        "list_name": phone_list.name,
        "pin": phone_list.pin,
        "ws_url": "/ws/browser-device/",
    }
    return JsonResponse(body)


def _browser_device(request: PanelRequest, public_id: str) -> Device | None:
    """The account's virtual phone with this id (never another kind of phone), or None."""
    try:
        device = selectors.get_device_for_account(account_id=current_account(request).pk, public_id=public_id)
    except errors.TargetNotFound:
        return None
    return device if device.kind == Device.Kind.BROWSER else None


@require_POST
@account_required
def virtual_phone_leave(request: PanelRequest) -> JsonResponse:
    """Removes the browser's virtual phone when it leaves its list, so the phone list does
    not fill with phones nobody will open again."""
    device = _browser_device(request, request.POST.get("device_id", ""))
    if device is not None:
        services.remove_device(device=device)
    return JsonResponse({"removed": device is not None})


@account_required
def virtual_phone_status(request: PanelRequest) -> JsonResponse:
    """Whether the browser's saved phone may still connect: `enabled`, `disabled` (in the
    panel; enabling it lets it back) or `gone` (removed: the page joins again)."""
    device = _browser_device(request, request.GET.get("device_id", ""))
    state = "gone" if device is None else ("enabled" if device.is_enabled else "disabled")
    return JsonResponse({"state": state})

"""Panel pages of the ipn app: settings and secret, the delivery log, replay and test."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from accounts import errors
from accounts.views import PanelRequest, account_required, current_account
from ipn import services
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent


class EndpointForm(forms.Form):
    url = forms.CharField(required=False, max_length=1000, label="Receiver URL", help_text="https://… on your server")
    enabled = forms.BooleanField(required=False, label="Send callbacks")
    events = forms.MultipleChoiceField(
        required=False,
        choices=[(name, name) for name in services.ALL_EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: all events.",
    )
    format = forms.ChoiceField(choices=IpnEndpoint.Format.choices, widget=forms.RadioSelect)


def _attempt_message(attempt: IpnAttempt) -> tuple[int, str]:
    level = messages.SUCCESS if attempt.outcome == IpnAttempt.Outcome.SUCCESS else messages.ERROR
    answer = f"HTTP {attempt.status_code}" if attempt.status_code else (attempt.error or "no answer")
    return level, f"Your receiver answered: {answer} in {attempt.latency_ms} ms."


@account_required
def ipn_settings(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    endpoint = services.get_or_create_endpoint(account=account)
    initial = {"url": endpoint.url, "enabled": endpoint.enabled, "events": endpoint.events, "format": endpoint.format}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_endpoint(
                account=account, url=data["url"], enabled=data["enabled"], events=data["events"], format=data["format"]
            )
        except errors.DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "IPN settings saved.")
            return redirect("ipn")
    events = IpnEvent.objects.filter(account=account).select_related("message").order_by("-created_at", "-id")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    response = render(request, "ipn/ipn.html", {"endpoint": endpoint, "form": form, "page": page})
    patch_cache_control(response, no_store=True)  # it shows the signing secret
    return response


@require_POST
@account_required
def ipn_rotate(request: PanelRequest) -> HttpResponse:
    services.rotate_secret(account=current_account(request))
    messages.success(request, "New secret. The old one keeps signing beside it for 24 hours: update your receiver.")
    return redirect("ipn")


@require_POST
@account_required
def ipn_test(request: PanelRequest) -> HttpResponse:
    try:
        attempt = services.send_test_event(account=current_account(request))
    except errors.DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.add_message(request, *_attempt_message(attempt))
    return redirect("ipn")


def _event(request: PanelRequest, webhook_id: str) -> IpnEvent:
    return get_object_or_404(
        IpnEvent.objects.select_related("message"), account=current_account(request), webhook_id=webhook_id
    )


@account_required
def ipn_event(request: PanelRequest, webhook_id: str) -> HttpResponse:
    event = _event(request, webhook_id)
    body = event.body
    if event.content_type.startswith("application/json"):
        try:
            body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pass  # shown as stored
    context: dict[str, Any] = {"event": event, "body": body, "attempts": event.attempts_log.order_by("-at", "-id")}
    return render(request, "ipn/ipn_event.html", context)


@require_POST
@account_required
def ipn_replay(request: PanelRequest, webhook_id: str) -> HttpResponse:
    event = _event(request, webhook_id)
    try:
        attempt = services.replay_event(account=current_account(request), webhook_id=event.webhook_id)
    except errors.DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.add_message(request, *_attempt_message(attempt))
    return redirect("ipn-event", webhook_id=event.webhook_id)

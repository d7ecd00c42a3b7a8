"""Panel pages of the ipn app: settings and secret, the delivery log, replay and test."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from accounts import errors
from accounts.views import PanelRequest, account_required, current_account
from ipn import delivery, services
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
    took = f"in {attempt.latency_ms} ms"
    if attempt.outcome == IpnAttempt.Outcome.SUCCESS:
        return messages.SUCCESS, f"Your receiver answered HTTP {attempt.status_code} {took}."
    if attempt.status_code:
        return messages.ERROR, f"Your receiver answered HTTP {attempt.status_code} {took}; only a 2xx answer counts."
    return messages.ERROR, f"Not delivered: {attempt.error or 'no answer'}."


# Why the endpoint was switched off, in words (the stored reason is a short code).
DISABLED_REASONS = {
    delivery.DISABLED_GONE: "your receiver answered 410 Gone, which asks for no more callbacks",
    delivery.DISABLED_FAILING: f"every attempt failed for {delivery.DISABLE_AFTER.days} days",
}


def _state(endpoint: IpnEndpoint) -> tuple[str, str, str]:
    """The endpoint's one state (badge class, label, sentence): the page says only this."""
    if endpoint.disabled_at:
        reason = DISABLED_REASONS.get(endpoint.disabled_reason, endpoint.disabled_reason)
        when = endpoint.disabled_at.strftime("%Y-%m-%d %H:%M")
        return "disabled", "off", f"Switched off automatically on {when}, because {reason}."
    if not endpoint.enabled or not endpoint.url:
        return "disabled", "off", "No callbacks are sent."
    if endpoint.failing_since:
        days = delivery.DISABLE_AFTER.days
        since = endpoint.failing_since.strftime("%Y-%m-%d %H:%M")
        text = (
            f"Failing since {since}: events are retried, and after {days} days of failures callbacks are switched off."
        )
        return "retry", "failing", text
    return "active", "on", "Callbacks are sent."


def _settings_page(request: PanelRequest, endpoint: IpnEndpoint, form: EndpointForm) -> HttpResponse:
    events = (
        IpnEvent.objects.filter(account=endpoint.account_id).select_related("message").order_by("-created_at", "-id")
    )
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    state, label, text = _state(endpoint)
    context = {
        "endpoint": endpoint,
        "form": form,
        "page": page,
        "state": state,
        "state_label": label,
        "state_text": text,
    }
    response = render(request, "ipn/ipn.html", context)
    patch_cache_control(response, no_store=True)  # it shows the signing secret
    return response


def _settings_form(endpoint: IpnEndpoint, data: Any = None) -> EndpointForm:
    # Switched off automatically: the box is unticked, as callbacks are off until it is ticked again.
    enabled = endpoint.enabled and not endpoint.disabled_at
    initial = {"url": endpoint.url, "enabled": enabled, "events": endpoint.events, "format": endpoint.format}
    return EndpointForm(data, initial=initial)


@account_required
def ipn_settings(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    endpoint = services.get_or_create_endpoint(account=account)
    form = _settings_form(endpoint, request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_endpoint(
                account=account, url=data["url"], enabled=data["enabled"], events=data["events"], format=data["format"]
            )
        except errors.DomainError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        else:
            messages.success(request, "IPN settings saved.")
            return redirect("ipn")
    return _settings_page(request, endpoint, form)


@require_POST
@account_required
def ipn_rotate(request: PanelRequest) -> HttpResponse:
    services.rotate_secret(account=current_account(request))
    messages.success(request, "New secret. The old one keeps signing beside it for 24 hours: update your receiver.")
    return redirect("ipn")


@require_POST
@account_required
def ipn_test(request: PanelRequest) -> HttpResponse:
    """A test event to the URL and format the settings form holds, saved or not. The page's
    script shows the answer beside the button; without it the page comes back with the form
    as it was typed, so an unsaved URL is never lost."""
    account = current_account(request)
    url, format = request.POST.get("url"), request.POST.get("format")
    try:
        level, text = _attempt_message(services.send_test_event(account=account, url=url, format=format))
    except errors.DomainError as exc:
        level, text = messages.ERROR, exc.message
    if request.headers.get("X-Requested-With") == "fetch":
        return JsonResponse({"ok": level == messages.SUCCESS, "message": text})
    messages.add_message(request, level, text)
    endpoint = services.get_or_create_endpoint(account=account)
    form = _settings_form(endpoint, request.POST if url is not None else None)
    return _settings_page(request, endpoint, form)


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

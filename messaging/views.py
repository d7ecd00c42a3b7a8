"""Panel pages of the messaging app: the message log, one message's timeline, the inbox."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import errors
from accounts.views import account_required, current_account
from devices.models import PhoneList
from messaging import selectors
from messaging.models import Message
from messaging.services import accept

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
        self.fields["list"].choices = choices  # type: ignore[attr-defined]


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def _filtered_messages(request: HttpRequest) -> tuple[MessageFilterForm, QuerySet[Message]]:
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


def _query_without_page(request: HttpRequest) -> str:
    return urlencode([(k, v) for k, v in request.GET.items() if k != "page" and v])


@account_required
def message_log(request: HttpRequest) -> HttpResponse:
    form, queryset = _filtered_messages(request)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = _query_without_page(request)
    return render(request, "panel/messages.html", {"form": form, "page": page, "query": query})


@account_required
def message_log_live(request: HttpRequest) -> HttpResponse:
    """The rows of the current page, for live refresh."""
    _form, queryset = _filtered_messages(request)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "panel/_message_rows.html", {"page": page})


def _message(request: HttpRequest, message_id: str) -> Message:
    try:
        return selectors.get_message_for_account(account_id=current_account(request).pk, message_id=message_id)
    except errors.NotFound:
        raise Http404


def _detail_context(message: Message) -> dict[str, Any]:
    return {
        "m": message,
        "events": message.events.select_related("device"),
        "ledger": message.ledger_entries.order_by("created_at"),
        "ipn_events": message.ipn_events.order_by("created_at"),
    }


@account_required
def message_detail(request: HttpRequest, message_id: str) -> HttpResponse:
    return render(request, "panel/message_detail.html", _detail_context(_message(request, message_id)))


@account_required
def message_detail_live(request: HttpRequest, message_id: str) -> HttpResponse:
    return render(request, "panel/_message_detail_live.html", _detail_context(_message(request, message_id)))


@require_POST
@account_required
def message_cancel(request: HttpRequest, message_id: str) -> HttpResponse:
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
def inbox(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    lists = {pl.token: pl for pl in PhoneList.objects.filter(account=account)}
    phone_list = lists.get(request.GET.get("list", ""))
    queryset = selectors.inbox_for_account(
        account_id=account.pk, phone_list_id=phone_list.pk if phone_list else None
    ).order_by("-received_at", "-id")
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "lists": lists.values(), "current": phone_list, "query": _query_without_page(request)}
    return render(request, "panel/inbox.html", context)

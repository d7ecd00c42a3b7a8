"""Panel pages of the accounts app: sign-in, API keys and credit, and what every panel
page stands on (`account_required`, `current_account`, `base_url_for`).

Every page is scoped to the signed-in user's account; an id of another account's
object is simply not found (404).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control
from django.views import defaults
from django.views.decorators.http import require_POST

from accounts import errors, selectors, services
from accounts.envelope import TOKEN_OR_ID_DEVICE_ERROR, error_for_path
from accounts.forms import (
    RESET_LIMIT_PER_ADDRESS,
    RESET_LIMIT_PER_EMAIL,
    RESET_WINDOW,
    ActiveAccountPasswordResetForm,
    ApiKeyForm,
    ThrottledLoginForm,
)
from accounts.middleware import ClientRequest
from accounts.models import Account, ApiKey, User

View = Callable[..., HttpResponse]


class PanelRequest(ClientRequest):
    """A panel page's request, after `account_required`."""

    user: User
    account: Account


def account_required(view: View) -> View:
    """Signed in, with an account: the panel is for customers (operators use the admin)."""

    @login_required
    @wraps(view)
    def wrapper(request: PanelRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = request.user.account
        if account is None:
            return redirect("admin:index")
        if not account.is_active:
            # Deactivated: every session of its users ends at its next request.
            logout(request)
            messages.error(request, "This account has been deactivated.")
            return redirect(settings.LOGIN_URL)
        request.account = account
        return view(request, *args, **kwargs)

    return wrapper


def current_account(request: PanelRequest) -> Account:
    return request.account


class LoginView(auth_views.LoginView):
    form_class = ThrottledLoginForm
    redirect_authenticated_user = True


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, rate limited per client address and per email address;
    the link in the mail is built on SITE_URL when it is set (not on the request's host)."""

    form_class = ActiveAccountPasswordResetForm

    def form_valid(self, form: Any) -> HttpResponse:
        email = form.cleaned_data["email"].strip().lower()
        try:
            services.count_request(
                scope=services.address_scope("reset:ip", self.request.client_ip),  # type: ignore[attr-defined]
                limit=RESET_LIMIT_PER_ADDRESS,
                window=RESET_WINDOW,
            )
            services.count_request(scope=f"reset:email:{email}"[:200], limit=RESET_LIMIT_PER_EMAIL, window=RESET_WINDOW)
        except errors.RateLimited as exc:
            form.add_error(None, f"Too many reset requests. Try again in {max(1, -(-exc.retry_after // 60))} minutes.")
            response = self.form_invalid(form)
            response.status_code = 429
            response["Retry-After"] = str(exc.retry_after)
            return response
        site = urlsplit(settings.SITE_URL) if settings.SITE_URL else None
        form.save(
            domain_override=site.netloc if site else None,
            use_https=site.scheme == "https" if site else self.request.is_secure(),
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context=self.extra_email_context,
        )
        return HttpResponseRedirect(self.get_success_url())


# --- API keys ---------------------------------------------------------------------


def _get_key_for_account(account: Account, pk: int) -> ApiKey:
    try:
        return selectors.get_key_for_account(account_id=account.pk, pk=pk)
    except errors.NotFound:
        raise Http404


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
def keys(request: PanelRequest) -> HttpResponse:
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
            hand_over_secret(request, name=f"key:{key.pk}", secret=secret)
            return redirect("key-created", pk=key.pk)
    rows = ApiKey.objects.filter(account=account).select_related("default_list").order_by("revoked_at", "-created_at")
    return render(request, "accounts/keys.html", {"form": form, "keys": rows, "client_ip": request.client_ip})


@account_required
def key_created(request: PanelRequest, pk: int) -> HttpResponse:
    """The new key's secret, once: reloading this page shows it no more and creates nothing.
    The page's code examples come from the messaging app's `key_examples` tag."""
    key = _get_key_for_account(current_account(request), pk)
    secret = take_secret(request, name=f"key:{key.pk}")
    response = render(request, "accounts/key_created.html", {"key": key, "secret": secret})
    patch_cache_control(response, no_store=True)  # the secret must not land in any cache
    return response


@account_required
def key_detail(request: PanelRequest, pk: int) -> HttpResponse:
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
    context = {"key": key, "form": form, "client_ip": request.client_ip}
    return render(request, "accounts/key_detail.html", context)


@require_POST
@account_required
def key_revoke(request: PanelRequest, pk: int) -> HttpResponse:
    key = _get_key_for_account(current_account(request), pk)
    services.revoke_api_key(key=key)
    messages.success(request, f"Revoked “{key.name}”: calls with it are now refused as an unknown key.")
    return redirect("keys")


# --- Secrets shown once -------------------------------------------------------------------
# A new secret (an API key, a phone's private token) is shown on the page the POST that made
# it redirects to, so reloading that page creates nothing. It rides in the session for that
# one step and is removed when shown; Phonefleet keeps only its digest.


def hand_over_secret(request: HttpRequest, *, name: str, secret: str) -> None:
    """Keeps `secret` for the next page that shows it (`take_secret` with the same name)."""
    request.session[f"shown-once:{name}"] = secret


def take_secret(request: HttpRequest, *, name: str) -> str | None:
    """The secret handed over under `name`, removed as it is taken; None once shown."""
    secret: str | None = request.session.pop(f"shown-once:{name}", None)
    return secret


# --- Base URL ---------------------------------------------------------------------------


def base_url_for(request: HttpRequest) -> str:
    """The server's address as the customer reaches it (SITE_URL, or this request's host)."""
    return settings.SITE_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")


# --- Credit -----------------------------------------------------------------------------


@account_required
def credit_live(request: PanelRequest) -> HttpResponse:
    """The header's credit badge, for live refresh on every page."""
    account = current_account(request)
    account.refresh_from_db(fields=["balance", "debt"])
    return render(request, "accounts/_credit_badge.html", {"balance": account.balance, "debt": account.debt})


@account_required
def credit(request: PanelRequest) -> HttpResponse:
    account = current_account(request)
    account.refresh_from_db(fields=["balance", "debt"])
    entries = account.ledger.select_related("message").order_by("-created_at", "-id")
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "accounts/credit.html", {"page": page, "balance": account.balance, "debt": account.debt})


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400 (Django's refusals of a malformed request: too many fields, a broken
    multipart body…): under the API in its shape; elsewhere Django's page."""
    answer = error_for_path(request.path, 400, "The request is malformed or too large to read.")
    return answer or defaults.bad_request(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an unknown path under the API answers in its shape (the envelope, code 6);
    elsewhere Django's page."""
    answer = error_for_path(request.path, 404, "No such operation or object.", TOKEN_OR_ID_DEVICE_ERROR)
    return answer or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a bug (logged by Django as an error) still answers the API's clients in
    their shape; elsewhere Django's page."""
    answer = error_for_path(request.path, 500, "The server failed on this request; it has been logged.")
    return answer or defaults.server_error(request)

"""Panel forms of the accounts app: sign-in with a throttle, and API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts import errors, services
from accounts.models import Account, ApiKey

# Wrong passwords: 10 per address (20 per username) in 15 minutes, then growing lockouts.
LOGIN_POLICY_IP = services.ThrottlePolicy(
    max_failures=10, window=timedelta(minutes=15), first_lockout=timedelta(minutes=5), max_lockout=timedelta(hours=1)
)
LOGIN_POLICY_USER = services.ThrottlePolicy(
    max_failures=20, window=timedelta(minutes=15), first_lockout=timedelta(minutes=5), max_lockout=timedelta(hours=1)
)


class ThrottledLoginForm(AuthenticationForm):
    """Django's sign-in form; every attempt is counted atomically before the password is
    checked, per client address and per username, so guessing in parallel does not help."""

    def clean(self) -> dict[str, Any]:
        ip = getattr(self.request, "client_ip", "") or "unknown"
        username = (self.cleaned_data.get("username") or "").strip().lower()
        scopes = [(f"login:ip:{ip}", LOGIN_POLICY_IP)]
        if username:
            scopes.append((f"login:user:{username}", LOGIN_POLICY_USER))
        try:
            for scope, policy in scopes:
                services.reserve_attempt(scope=scope, policy=policy)
        except errors.RateLimited as exc:
            raise forms.ValidationError(
                "Too many sign-in attempts. Try again in %(minutes)s minutes.",
                code="throttled",
                params={"minutes": max(1, exc.retry_after // 60)},
            )
        cleaned = super().clean()
        for scope, _policy in scopes:
            services.release_attempt(scope=scope)
        return cleaned


def _lines(value: str) -> list[str]:
    return [item.strip() for item in value.replace(",", "\n").splitlines() if item.strip()]


class ApiKeyForm(forms.Form):
    """Create or edit one API key: its IP rule, CORS origins, default list and rate limit."""

    IP_MODES = [("any", "Any IP"), ("only", "Allow only from these IPs")]

    name = forms.CharField(max_length=100, initial="My API")
    ip_mode = forms.ChoiceField(choices=IP_MODES, initial="any", widget=forms.RadioSelect, label="IP rule")
    allowed_ips = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "203.0.113.7\n2001:db8::/48"}),
        help_text="One address or CIDR range a line. IPv4 and IPv6.",
    )
    cors_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "https://shop.example"}),
        label="Allowed browser origins (CORS)",
        help_text="Only needed when a web page calls the API directly. One origin a line.",
    )
    # Built from the key's own relation, as a ModelForm would: a choice of lists (devices app).
    default_list = ApiKey.default_list.field.formfield(help_text="Calls may then omit `list`.")
    rate_limit_per_minute = forms.IntegerField(
        required=False, min_value=1, max_value=100_000, label="Rate limit (requests a minute)"
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lists = self.fields["default_list"]
        assert isinstance(lists, forms.ModelChoiceField) and lists.queryset is not None
        lists.queryset = lists.queryset.filter(account=account)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        ips = _lines(cleaned.get("allowed_ips", ""))
        if cleaned.get("ip_mode") == "only":
            if not ips:
                self.add_error("allowed_ips", "List at least one address, or choose “Any IP”.")
            try:
                cleaned["allowed_ip_list"] = services.clean_ip_rules(ips)
            except errors.InvalidParameter as exc:
                self.add_error("allowed_ips", exc.message)
        else:
            cleaned["allowed_ip_list"] = []
        try:
            cleaned["cors_origin_list"] = services.clean_origins(_lines(cleaned.get("cors_origins", "")))
        except errors.InvalidParameter as exc:
            self.add_error("cors_origins", exc.message)
        return cleaned

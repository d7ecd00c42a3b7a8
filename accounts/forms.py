"""Panel forms of the accounts app: sign-in with a throttle, and API keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm

from accounts import errors, services
from accounts.models import Account, ApiKey, User

# Wrong passwords: 10 per address (20 per username) in 15 minutes, then growing lockouts.
LOGIN_POLICY_IP = services.ThrottlePolicy(
    max_failures=10, window=timedelta(minutes=15), first_lockout=timedelta(minutes=5), max_lockout=timedelta(hours=1)
)
LOGIN_POLICY_USER = services.ThrottlePolicy(
    max_failures=20, window=timedelta(minutes=15), first_lockout=timedelta(minutes=5), max_lockout=timedelta(hours=1)
)


# Password-reset requests (every one counts): 5 an hour per address, 3 an hour per email
# address (it is the account's: each mails its owner, so nobody's inbox can be flooded).
RESET_LIMIT_PER_ADDRESS = 5
RESET_LIMIT_PER_EMAIL = 3
RESET_WINDOW = timedelta(hours=1)


class LoginThrottleMixin(AuthenticationForm):
    """Every sign-in attempt holds a slot per client address and per username while the
    password is checked, and a wrong one is counted, atomically, so guessing in parallel
    does not help and a right password never brings a lockout closer. The panel's and the
    admin's sign-in share the counts."""

    def clean(self) -> dict[str, Any]:
        ip = getattr(self.request, "client_ip", "") or "unknown"
        username = (self.cleaned_data.get("username") or "").strip().lower()
        scopes = [(services.address_scope("login:ip", ip), LOGIN_POLICY_IP)]
        if username:
            scopes.append((f"login:user:{username}"[:200], LOGIN_POLICY_USER))
        try:
            with services.guarded_attempt(scopes, wrong=(forms.ValidationError,)):
                return super().clean()
        except errors.RateLimited as exc:
            raise forms.ValidationError(
                "Too many sign-in attempts. Try again in %(minutes)s minutes.",
                code="throttled",
                params={"minutes": max(1, -(-exc.retry_after // 60))},
            )


class ThrottledLoginForm(LoginThrottleMixin):
    """The panel's sign-in: a user of a deactivated account is refused."""

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if user.account is not None and not user.account.is_active:
            raise forms.ValidationError("This account has been deactivated.", code="inactive")


class ThrottledAdminLoginForm(LoginThrottleMixin, AdminAuthenticationForm):
    """`/admin/login/`: Django's admin sign-in with the same throttle as the panel's."""


class ActiveAccountPasswordResetForm(PasswordResetForm):
    """Django's reset form; users of a deactivated account get no link."""

    def get_users(self, email: str) -> Iterator[Any]:
        for user in super().get_users(email):
            account = getattr(user, "account", None)
            if account is None or account.is_active:
                yield user


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

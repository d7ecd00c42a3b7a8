import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import services
from accounts.models import Account, ApiKey, User
from devices.models import PhoneList


def test_createaccount_prints_working_credentials(db):
    out = StringIO()
    call_command("createaccount", "--email", "carol@example.com", "--credit", "25", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert {"account", "email", "password", "api_key", "list", "pin"} <= set(data)
    account = Account.objects.get(pk=data["account"])
    assert account.balance == 25
    key = services.authenticate_api_key(secret=data["api_key"])
    phone_list = PhoneList.objects.get(token=data["list"])
    assert key.default_list_id == phone_list.pk
    assert phone_list.pin == data["pin"] and data["pin"].isdigit() and len(data["pin"]) >= 6
    assert User.objects.get(email="carol@example.com").check_password(data["password"])
    assert ApiKey.objects.filter(account=account).count() == 1


def test_createaccount_refuses_a_duplicate_email(db):
    call_command("createaccount", "--email", "dup@example.com", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("createaccount", "--email", "dup@example.com", stdout=StringIO())


def test_bootstrap_demo_is_idempotent(db, tmp_path, settings):
    settings.BASE_DIR = tmp_path
    first, second = StringIO(), StringIO()
    call_command("bootstrap_demo", "--json", stdout=first)
    call_command("bootstrap_demo", "--json", stdout=second)
    assert json.loads(first.getvalue()) == json.loads(second.getvalue())
    assert Account.objects.count() == 1


@pytest.mark.parametrize("option", ["--credit", "--rate"])
def test_createaccount_refuses_numbers_its_columns_cannot_hold(db, option):
    with pytest.raises(CommandError, match="whole number"):
        call_command("createaccount", "--email", "erin@example.com", option, str(2**63), stdout=StringIO())
    assert not User.objects.filter(username="erin@example.com").exists()

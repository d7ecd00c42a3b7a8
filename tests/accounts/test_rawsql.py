"""Hand-written statements on both databases (accounts/rawsql.py): a list bound as one
parameter finds the rows `__in` finds, and rows come back converted as a queryset's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import rawsql
from devices.models import Device, PhoneList
from tests import factories

pytestmark = pytest.mark.django_db


def _select(column: str, values: list[object]) -> set[int]:
    table, quote = Device._meta.db_table, connection.ops.quote_name
    sql = f"SELECT {quote('id')} FROM {quote(table)} WHERE {quote(column)} {rawsql.in_list('values')}"
    with connection.cursor() as cursor:
        cursor.execute(sql, {"values": rawsql.list_value(values)})
        return {pk for (pk,) in cursor.fetchall()}


def test_a_list_parameter_finds_the_rows_in_finds_by_id_by_foreign_key_and_by_text(alice_list, bob_list):
    phones = [factories.make_device(phone_list=alice_list, name=f"a{n}") for n in range(3)]
    phones += [factories.make_device(phone_list=bob_list, name=f"b{n}") for n in range(2)]
    cases = [
        ("id", "pk", [phones[0].pk, phones[3].pk, 10**9]),  # one that does not exist
        ("phone_list_id", "phone_list_id", [bob_list.pk]),
        ("phone_list_id", "phone_list_id", [alice_list.pk, bob_list.pk]),
        ("public_id", "public_id", [phones[1].public_id, "nobody", 'it\'s "quoted"']),
        ("id", "pk", []),
    ]
    for column, field, values in cases:
        by_in = set(Device.objects.filter(**{f"{field}__in": values}).values_list("pk", flat=True))
        assert _select(column, values) == by_in, (column, values)
    assert _select("id", [phones[0].pk, phones[3].pk, 10**9]) == {phones[0].pk, phones[3].pk}
    assert _select("id", []) == set()


def test_any_number_of_values_is_one_parameter(alice_list):
    phone = factories.make_device(phone_list=alice_list)
    ids = [phone.pk, *range(10**9, 10**9 + 40_000)]  # past SQLite's 32,766 variables
    with CaptureQueriesContext(connection) as queries:
        assert _select("id", ids) == {phone.pk}
    assert len(queries.captured_queries) == 1
    if connection.vendor == "postgresql":
        assert "= ANY(" in queries.captured_queries[0]["sql"]
    assert rawsql.in_list("ids").count("%(ids)s") == 1


def test_rows_come_back_as_a_queryset_gives_them(alice_list):
    alice_list.confirm_subscriptions = True
    alice_list.save()
    names = ("id", "confirm_subscriptions", "created_at", "account_id", "rate_limit_per_minute")
    table, quote = PhoneList._meta.db_table, connection.ops.quote_name
    column_of = {field.attname: str(field.column) for field in PhoneList._meta.concrete_fields}
    columns = ", ".join(quote(column_of[name]) for name in names)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {quote(table)} WHERE {quote('id')} = %s", [alice_list.pk])
        rows = cursor.fetchall()
    converted = rawsql.convert_rows(PhoneList, names, rows)
    expected = list(PhoneList.objects.filter(pk=alice_list.pk).values_list(*names))
    assert [tuple(row) for row in converted] == expected
    row = converted[0]
    assert row[1] is True and abs(row[2] - timezone.now()) < timedelta(minutes=5) and row[4] is None

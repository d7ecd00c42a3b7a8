"""`field__any=[...]` (accounts/lookups.py): the rows of `field__in`, with the values bound as
one array parameter on PostgreSQL (the fleet's pass sends a thousand ids a statement)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Device
from tests import factories

pytestmark = pytest.mark.django_db


def test_any_finds_the_rows_in_finds_by_id_by_foreign_key_and_by_text(alice_list, bob_list):
    phones = [factories.make_device(phone_list=alice_list, name=f"a{n}") for n in range(3)]
    phones += [factories.make_device(phone_list=bob_list, name=f"b{n}") for n in range(2)]
    wanted = [phones[0].pk, phones[3].pk, 10**9]  # one that does not exist
    cases = [
        ("pk", wanted),
        ("phone_list_id", [bob_list.pk]),
        ("phone_list", [alice_list.pk, bob_list.pk]),
        ("public_id", [phones[1].public_id, "nobody"]),
        ("pk", []),
    ]
    for field, values in cases:
        by_any = set(Device.objects.filter(**{f"{field}__any": values}).values_list("pk", flat=True))
        by_in = set(Device.objects.filter(**{f"{field}__in": values}).values_list("pk", flat=True))
        assert by_any == by_in, field
    assert set(Device.objects.filter(pk__any=wanted).values_list("pk", flat=True)) == {phones[0].pk, phones[3].pk}
    assert not Device.objects.filter(pk__any=[]).exists()
    assert Device.objects.exclude(pk__any=[]).count() == 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the array parameter is PostgreSQL's")
def test_on_postgresql_a_thousand_values_are_one_parameter(alice_list):
    phone = factories.make_device(phone_list=alice_list)
    ids = [phone.pk, *range(10**9, 10**9 + 999)]
    with CaptureQueriesContext(connection) as queries:
        found = list(Device.objects.filter(pk__any=ids).values_list("pk", flat=True))
    assert found == [phone.pk]
    sql = queries.captured_queries[0]["sql"]
    assert "= ANY(" in sql and " IN (" not in sql
    with connection.cursor() as cursor:  # what the ORM sent: one parameter, not a thousand
        compiled, params = Device.objects.filter(pk__any=ids).query.sql_with_params()
        assert len(params) == 1 and list(params[0]) == ids
        cursor.execute(compiled, params)
        assert cursor.fetchall()

"""The live fragments are polled every two seconds by every open page: their query count
must not grow with the number of rows shown."""

from __future__ import annotations

from django.urls import reverse

from tests import factories


def fill(world, *, phones: int, messages: int) -> None:
    for i in range(phones):
        factories.make_device(phone_list=world["list"], name=f"Phone {i}", online=True)
    for i in range(messages):
        factories.make_message(phone_list=world["list"], text=f"Message {i}", cost=0)


def count_queries(client, url, django_assert_max_num_queries, budget):
    with django_assert_max_num_queries(budget):
        assert client.get(url).status_code == 200


def test_live_fragments_use_a_fixed_number_of_queries(alice_world, alice_client, django_assert_max_num_queries):
    fill(alice_world, phones=2, messages=2)
    urls = [reverse("messages-live"), reverse("phones-live"), reverse("dashboard-live")]
    small = {}
    for url in urls:
        with django_assert_max_num_queries(100) as captured:
            alice_client.get(url)
        small[url] = len(captured.captured_queries)
    fill(alice_world, phones=20, messages=40)
    for url in urls:
        count_queries(alice_client, url, django_assert_max_num_queries, small[url])
    assert max(small.values()) <= 12, small

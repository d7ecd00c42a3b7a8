"""/api/v1/lists/<token>/subscribers (list, add, remove, CSV) and /broadcast."""

from __future__ import annotations

import csv
import io

import pytest

from accounts.models import Account
from devices.models import Subscriber
from messaging.models import Message
from messaging.services import subscriptions
from tests import factories

ANNA, BRUNO, CARLA = "+393331110001", "+393331110002", "+393331110003"


@pytest.fixture
def api(client, alice_key):
    _key, secret = alice_key
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    class Api:
        def get(self, path, data=None):
            return client.get(path, data or {}, **headers)

        def post(self, path, data=None, **extra):
            return client.post(path, data or {}, **headers, **extra)

        def post_json(self, path, data, **extra):
            return client.post(path, data, content_type="application/json", **headers, **extra)

        def delete(self, path):
            return client.delete(path, **headers)

    return Api()


@pytest.fixture
def base(alice_list):
    return f"/api/v1/lists/{alice_list.token}"


def subscribe(phone_list, *numbers):
    subscriptions.import_subscribers(phone_list=phone_list, numbers=list(numbers), source="sms")


def envelope_of(response, http_status, status_code):
    body = response.json()
    assert response.status_code == http_status, body
    assert (body["response"], body["status_code"]) == (str(http_status), str(status_code))
    return body


# --- Subscribers ----------------------------------------------------------------------------


def test_it_adds_one_number_in_the_lists_country(api, base, alice_list):
    body = envelope_of(api.post(f"{base}/subscribers", {"number": "333 111 0001"}), 200, 2)
    assert (body["added"], body["already"], body["errors"]) == ([ANNA], [], [])
    assert Subscriber.objects.get(phone_list=alice_list, number=ANNA).source == "api"


def test_it_adds_many_from_a_json_array_and_reports_bad_rows(api, base, alice_list):
    subscribe(alice_list, ANNA)
    body = envelope_of(api.post_json(f"{base}/subscribers", {"numbers": [ANNA, BRUNO, "nope"]}), 200, 2)
    assert body["added"] == [BRUNO] and body["already"] == [ANNA]
    assert body["errors"] == [{"row": 3, "number": "nope", "status_code": "5", "error": body["errors"][0]["error"]}]


def test_a_form_may_give_several_numbers_separated_by_commas_or_lines(api, base):
    body = envelope_of(api.post(f"{base}/subscribers", {"numbers": f"{ANNA}, {BRUNO}\n{CARLA}"}), 200, 2)
    assert body["added"] == [ANNA, BRUNO, CARLA]


def test_adding_nothing_or_only_bad_numbers_is_refused(api, base):
    envelope_of(api.post(f"{base}/subscribers", {}), 400, 7)
    body = envelope_of(api.post(f"{base}/subscribers", {"number": "hello"}), 400, 5)
    assert body["errors"][0]["number"] == "hello"


def test_it_lists_current_subscribers_newest_first_in_pages(api, base, alice_list):
    for number in (ANNA, BRUNO, CARLA):
        subscriptions.subscribe(phone_list=alice_list, number=number, source="sms")
    subscriptions.unsubscribe(phone_list=alice_list, number=BRUNO)
    first = envelope_of(api.get(f"{base}/subscribers", {"limit": 1}), 200, 2)
    assert [s["number"] for s in first["subscribers"]] == [CARLA]
    assert first["subscribers"][0]["source"] == "sms" and first["subscribers"][0]["subscribed"] is True
    second = envelope_of(api.get(f"{base}/subscribers", {"limit": 1, "cursor": first["next_cursor"]}), 200, 2)
    assert [s["number"] for s in second["subscribers"]] == [ANNA] and second["next_cursor"] is None
    former = envelope_of(api.get(f"{base}/subscribers", {"state": "unsubscribed"}), 200, 2)
    assert [(s["number"], s["subscribed"]) for s in former["subscribers"]] == [(BRUNO, False)]
    everyone = envelope_of(api.get(f"{base}/subscribers", {"state": "all"}), 200, 2)
    assert len(everyone["subscribers"]) == 3
    envelope_of(api.get(f"{base}/subscribers", {"state": "gone"}), 400, 5)


def test_it_removes_a_subscriber_by_number(api, base, alice_list):
    subscribe(alice_list, ANNA)
    body = envelope_of(api.delete(f"{base}/subscribers/{ANNA}"), 200, 2)
    assert (body["number"], body["subscribed"]) == (ANNA, False) and body["unsubscribed_at"]
    envelope_of(api.delete(f"{base}/subscribers/{ANNA}"), 404, 6)  # no longer subscribed
    envelope_of(api.delete(f"{base}/subscribers/3339999999"), 404, 6)  # never was


def test_a_national_number_in_the_path_removes_the_e164_subscriber(api, base, alice_list):
    subscribe(alice_list, ANNA)
    envelope_of(api.delete(f"{base}/subscribers/3331110001"), 200, 2)
    assert not Subscriber.objects.get(number=ANNA).is_subscribed


def test_it_exports_csv_with_former_subscribers(api, base, alice_list):
    subscribe(alice_list, ANNA, BRUNO)
    subscriptions.unsubscribe(phone_list=alice_list, number=BRUNO)
    response = api.get(f"{base}/subscribers.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["number", "source", "subscribed_at", "unsubscribed_at"]
    assert [(r[0], r[3] != "") for r in rows[1:]] == [(f"'{ANNA}", False), (f"'{BRUNO}", True)]


def test_another_accounts_list_is_code_6_everywhere(client, bob_key, base, alice_list):
    subscribe(alice_list, ANNA)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {bob_key[1]}"}
    for method, path in (
        ("get", f"{base}/subscribers"),
        ("post", f"{base}/subscribers"),
        ("get", f"{base}/subscribers.csv"),
        ("delete", f"{base}/subscribers/{ANNA}"),
        ("post", f"{base}/broadcast"),
    ):
        response = getattr(client, method)(path, {"number": BRUNO, "msg": "x"} if method == "post" else None, **headers)
        envelope_of(response, 400, 6)
    assert Subscriber.objects.get(number=ANNA).is_subscribed
    assert not Message.objects.exists()


def test_a_missing_key_is_code_3(client, base):
    envelope_of(client.get(f"{base}/subscribers"), 401, 3)


# --- Broadcast ---------------------------------------------------------------------------------


def test_a_broadcast_queues_one_message_per_current_subscriber_in_one_batch(api, base, alice, alice_list):
    subscribe(alice_list, ANNA, BRUNO, CARLA)
    subscriptions.unsubscribe(phone_list=alice_list, number=BRUNO)
    body = envelope_of(api.post(f"{base}/broadcast", {"msg": "Concert at 21:00", "custom": "promo-7"}), 200, 2)
    messages = Message.objects.filter(batch_id=body["batch_id"]).order_by("to")
    assert [(m.to, m.text, m.ref, m.status) for m in messages] == [
        (ANNA, "Concert at 21:00", "promo-7", "queued"),
        (CARLA, "Concert at 21:00", "promo-7", "queued"),
    ]
    assert (body["recipients"], body["parts"], body["cost"]) == (2, 2, 2)
    assert Account.objects.get(pk=alice.pk).balance == 98


def test_a_broadcast_needs_a_text_and_subscribers(api, base, alice_list):
    envelope_of(api.post(f"{base}/broadcast", {"msg": "Hello"}), 400, 7)
    subscribe(alice_list, ANNA)
    envelope_of(api.post(f"{base}/broadcast", {"msg": "  "}), 400, 8)
    assert not Message.objects.exists()


def test_a_broadcast_is_all_or_nothing_on_credit(api, base, alice, alice_list):
    subscribe(alice_list, ANNA, BRUNO, CARLA)
    Account.objects.filter(pk=alice.pk).update(balance=2)
    envelope_of(api.post(f"{base}/broadcast", {"msg": "Hello"}), 402, 9)
    assert not Message.objects.exists()
    assert Account.objects.get(pk=alice.pk).balance == 2


def test_a_broadcast_with_an_idempotency_key_runs_once(api, base, alice_list):
    subscribe(alice_list, ANNA, BRUNO)
    first = envelope_of(api.post_json(f"{base}/broadcast", {"msg": "Hi"}, HTTP_IDEMPOTENCY_KEY="b-1"), 200, 2)
    again = api.post_json(f"{base}/broadcast", {"msg": "Hi"}, HTTP_IDEMPOTENCY_KEY="b-1")
    assert again.json() == first and again["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == 2
    envelope_of(api.post_json(f"{base}/broadcast", {"msg": "Other"}, HTTP_IDEMPOTENCY_KEY="b-1"), 422, 5)


def test_the_same_idempotency_key_on_another_list_is_another_request(api, alice, alice_list):
    other = factories.make_list(account=alice, name="Shop")
    subscribe(alice_list, ANNA)
    subscribe(other, BRUNO)
    api.post_json(f"/api/v1/lists/{alice_list.token}/broadcast", {"msg": "Hi"}, HTTP_IDEMPOTENCY_KEY="k")
    response = api.post_json(f"/api/v1/lists/{other.token}/broadcast", {"msg": "Hi"}, HTTP_IDEMPOTENCY_KEY="k")
    envelope_of(response, 422, 5)  # a key names one request: reusing it elsewhere is refused, not replayed
    assert list(Message.objects.values_list("to", flat=True)) == [ANNA]


def test_the_developers_page_example_matches_the_route(api, alice_list):
    from django.urls import resolve

    from messaging.lib import snippets

    op = snippets.OPERATIONS_BY_SLUG["broadcast"]
    context = snippets.Context(base_url="http://x", list_token=alice_list.token)
    view = resolve(context.fill(op.path)).func.view_class  # type: ignore[attr-defined]
    assert hasattr(view, op.method.lower())
    assert {p.name for p in op.params} <= set(view.InputSerializer().fields)
    subscribe(alice_list, ANNA)
    call = snippets.build_call(op, context)
    body = envelope_of(api.post(call.url.removeprefix("http://x"), dict(call.fields)), 200, 2)
    assert body["recipients"] == 1


def test_a_list_token_with_a_nul_byte_is_refused_before_any_lookup(api):
    # InputErrorMiddleware: a NUL in the path is a malformed address (param_error), with its sentence.
    body = envelope_of(api.get("/api/v1/lists/lst_%00x/subscribers"), 400, 5)
    assert "NUL" in str(body)


def test_the_developers_page_examples_for_subscribers_work_in_order(api, alice_list):
    from messaging.lib import snippets

    context = snippets.Context(base_url="http://x", list_token=alice_list.token)
    for slug, check in (
        ("subscribers_add", lambda body: body["added"] == ["+393331234567", "+393337654321"]),
        ("subscribers", lambda body: len(body["subscribers"]) == 2),
        ("subscriber_remove", lambda body: body["number"] == "+393331234567" and not body["subscribed"]),
    ):
        call = snippets.build_call(snippets.OPERATIONS_BY_SLUG[slug], context)
        path = call.url.removeprefix("http://x")
        if call.method == "GET":
            response = api.get(path)
        elif call.method == "DELETE":
            response = api.delete(path)
        else:
            response = api.post_json(path, call.json_body)
        assert check(envelope_of(response, 200, 2)), slug

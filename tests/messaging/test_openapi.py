"""The OpenAPI schema (/api/schema/) and the browsable docs (/api/docs/)."""

from __future__ import annotations

import jsonschema
import pytest
import yaml


@pytest.fixture
def schema(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def validator(schema, component):
    root = {"components": schema["components"], "$ref": f"#/components/schemas/{component}"}
    return jsonschema.Draft202012Validator(root)


def as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it (a type that also allows null)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def response_schema(schema, path, method, status):
    content = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator(as_json_schema({"components": schema["components"], **content}))


def test_every_public_operation_is_described(schema):
    for path in (
        "/api/v1/send",
        "/api/v1/send/bulk",
        "/api/v1/messages",
        "/api/v1/messages/{message_id}",
        "/api/v1/messages/{message_id}/cancel",
        "/api/v1/lists",
        "/api/v1/devices",
        "/api/v1/inbox",
        "/api/v1/verify",
        "/api/v1/verify/check",
        "/api/v1/verify/{verification_id}",
        "/tools/api.pl",
    ):
        assert path in schema["paths"], path


def test_real_answers_validate_against_the_schema(schema, client, alice_key):
    _key, secret = alice_key
    ok = client.post("/api/v1/send", {"api_key": secret, "to": "+393331234567", "msg": "Hi"})
    response_schema(schema, "/api/v1/send", "post", "200").validate(ok.json())
    refused = client.post("/api/v1/send", {"api_key": secret, "msg": "Hi"})
    response_schema(schema, "/api/v1/send", "post", "400").validate(refused.json())
    with pytest.raises(jsonschema.ValidationError):
        # The envelope is required: a bare body does not pass.
        response_schema(schema, "/api/v1/send", "post", "200").validate({"message_id": "msg_x", "parts": 1})


def test_the_verify_answers_validate_against_the_schema(schema, client, alice_key):
    from tests.messaging.verifying import check, code_sent, start

    _key, secret = alice_key
    started = start(client, secret)
    response_schema(schema, "/api/v1/verify", "post", "200").validate(started)
    response_schema(schema, "/api/v1/verify", "post", "400").validate(start(client, secret, length=3))
    code = code_sent(started["verification_id"])
    denied = check(client, secret, verification_id=started["verification_id"], code="0000000")
    approved = check(client, secret, verification_id=started["verification_id"], code=code)
    for answer in (denied, approved):
        response_schema(schema, "/api/v1/verify/check", "post", "200").validate(answer)
    shown = client.get(f"/api/v1/verify/{started['verification_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    response_schema(schema, "/api/v1/verify/{verification_id}", "get", "200").validate(shown.json())
    assert shown.json()["checks"] == [
        {"status": "denied", "at": shown.json()["checks"][0]["at"]},
        {"status": "approved", "at": shown.json()["checks"][1]["at"]},
    ]


def test_every_error_status_of_the_api_is_documented(schema):
    responses = schema["paths"]["/api/v1/send"]["post"]["responses"]
    assert {"200", "400", "401", "402", "403", "404", "409", "422", "429"} <= set(responses)


def test_the_docs_page_serves_swagger_ui_from_our_own_static_files(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()


def test_smsgates_client_api_is_described_once_with_its_errors(schema, client, alice_key):
    paths = [path for path in schema["paths"] if "3rdparty" in path]
    assert {
        "/3rdparty/v1/messages",
        "/3rdparty/v1/messages/{message_id}",
        "/3rdparty/v1/devices",
        "/3rdparty/v1/devices/{device_id}",
        "/3rdparty/v1/settings",
        "/3rdparty/v1/inbox",
        "/3rdparty/v1/inbox/refresh",
        "/3rdparty/v1/health",
        "/3rdparty/v1/auth/token",
    } <= set(paths)
    # The private server's prefix and the singular `/message` are the same operations.
    assert not [path for path in paths if path.startswith("/api/") or path.startswith("/3rdparty/v1/message/")]
    send = schema["paths"]["/3rdparty/v1/messages"]["post"]
    assert send["security"] == [{"SmsGateBasic": []}, {"SmsGateBearer": []}]
    _key, secret = alice_key
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    body = '{"textMessage": {"text": "Hi"}, "phoneNumbers": ["+393331111111", "+393332222222"]}'
    sent = client.post("/3rdparty/v1/messages", data=body, content_type="application/json", **auth)
    response_schema(schema, "/3rdparty/v1/messages", "post", "202").validate(sent.json())
    listed = client.get("/3rdparty/v1/messages", **auth)
    response_schema(schema, "/3rdparty/v1/messages", "get", "200").validate(listed.json())
    refused = client.post("/3rdparty/v1/messages", data="{}", content_type="application/json", **auth)
    response_schema(schema, "/3rdparty/v1/messages", "post", "400").validate(refused.json())
    health = client.get("/3rdparty/v1/health")
    response_schema(schema, "/3rdparty/v1/health", "get", "200").validate(health.json())

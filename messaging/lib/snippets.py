"""Ready-to-run code examples for every public API operation, in eight languages.

Each operation is described once (method, path, parameters with example values);
every language's example is generated from that description, so the API reference
and its examples cannot drift apart. Django-free: the panel passes in the account's
real values (base URL, list token, key) through `Context`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from messaging.lib import receivers

LANGUAGES: dict[str, str] = {
    "curl": "cURL",
    "python": "Python",
    "php": "PHP",
    "node": "Node.js",
    "java": "Java",
    "csharp": "C#",
    "go": "Go",
    "ruby": "Ruby",
}
KEY_PLACEHOLDER = "YOUR_API_KEY"


@dataclass(frozen=True)
class Param:
    """One parameter: its name, an example value (may name a context field as `{list}`)."""

    name: str
    example: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One public API operation, the single source of its reference row and examples."""

    slug: str
    title: str
    method: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    # "query" (GET parameters), "form", "json" or "" (no body).
    body: str = ""
    # For JSON bodies: the example document (strings may name context fields).
    json_example: Any = None
    # "bearer" (Authorization header) or "param" (the key as the `api` parameter, GenioSms style).
    auth: str = "bearer"
    # Path parameters, shown in the reference table.
    path_params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Context:
    """The account's real values that fill the examples."""

    base_url: str
    list_token: str = "lst_YOUR_LIST_TOKEN"
    api_key: str = KEY_PLACEHOLDER
    message_id: str = "msg_YOUR_MESSAGE_ID"
    webhook_id: str = "evt_YOUR_EVENT_ID"
    device_id: str = "dev_YOUR_DEVICE_ID"
    verification_id: str = "ver_YOUR_VERIFICATION_ID"
    # The code the user typed (a verification's check) and the number to verify.
    verify_code: str = "123456"
    to: str = "+393331234567"
    ipn_secret: str = "whsec_YOUR_IPN_SECRET"
    ipn_url: str = "https://example.com/phonefleet/ipn"
    receiver_port: int = 8080
    extra: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        values = {
            "list": self.list_token,
            "message_id": self.message_id,
            "webhook_id": self.webhook_id,
            "device_id": self.device_id,
            "verification_id": self.verification_id,
            "verify_code": self.verify_code,
            "to": self.to,
            "ipn_url": self.ipn_url,
            **self.extra,
        }
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        slug="send",
        title="Send an SMS",
        method="POST",
        path="/api/v1/send",
        summary="Queue one SMS; the first available phone of the list sends it. One record per phone that got it.",
        body="form",
        params=(
            Param("list", "{list}", "List token (may be omitted when the key has a default list)"),
            Param("to", "+393331234567", "Destination number, E.164 preferred", required=True),
            Param("msg", "Your code is 123456", "The text; long texts are split into parts", required=True),
            Param("ref", "order-42", "Your own reference, echoed in IPN callbacks"),
        ),
    ),
    Operation(
        slug="send_bulk",
        title="Send in bulk",
        method="POST",
        path="/api/v1/send/bulk",
        summary="Up to 10,000 recipients in one call; every row is validated, credit is taken once.",
        body="json",
        json_example={
            "list": "{list}",
            "msg": "Our shop opens at 9 tomorrow",
            "recipients": [{"to": "+393331234567"}, {"to": "+393337654321", "msg": "See you at 9, Anna!"}],
        },
        params=(
            Param("list", "{list}", "List token"),
            Param("msg", "…", "Text for every row without its own `msg`"),
            Param(
                "recipients",
                "[to | {to, msg?, ref?}]",
                "The rows: numbers, or objects with their own text",
                required=True,
            ),
        ),
    ),
    Operation(
        slug="verify_start",
        title="Send a verification code",
        method="POST",
        path="/api/v1/verify",
        summary="A one-time code (OTP) by SMS through your phones. Starting again for the same number replaces"
        " the pending code; a number gets one code per 30 s and 5 per hour.",
        body="form",
        params=(
            Param("list", "{list}", "List token (may be omitted when the key has a default list)"),
            Param("to", "{to}", "The number to verify", required=True),
            Param("length", "6", "Digits of the code, 4–10"),
            Param("ttl", "600", "Seconds the code stays valid, 60–1800"),
            Param("template", "Your Phonefleet code is {code}", "The SMS text; `{code}` is where the code goes"),
            Param("ref", "signup-42", "Your own reference, echoed in callbacks"),
        ),
    ),
    Operation(
        slug="verify_check",
        title="Check a verification code",
        method="POST",
        path="/api/v1/verify/check",
        summary="`status` says approved (once), denied (wrong; the fifth wrong code locks it), expired or"
        " too_many_attempts.",
        body="form",
        params=(
            Param("verification_id", "{verification_id}", "From the start's answer (or give `to`)", required=True),
            Param("code", "{verify_code}", "The code the user typed", required=True),
        ),
    ),
    Operation(
        slug="verify_status",
        title="Verification status",
        method="GET",
        path="/api/v1/verify/{verification_id}",
        summary="Status, wrong attempts, every check, and the delivery state of the SMS that carried the code.",
        path_params=(Param("verification_id", "{verification_id}", "The `verification_id`", required=True),),
    ),
    Operation(
        slug="message_status",
        title="Message status",
        method="GET",
        path="/api/v1/messages/{message_id}",
        summary="Status, timeline, parts and the phone that sent it.",
        path_params=(Param("message_id", "{message_id}", "The `message_id` from the send answer", required=True),),
    ),
    Operation(
        slug="list_messages",
        title="List messages",
        method="GET",
        path="/api/v1/messages",
        summary="Filter by status, list, date range or `ref`; cursor pagination.",
        body="query",
        params=(
            Param("status", "delivered", "queued, assigned, sent, delivered, failed, expired, cancelled"),
            Param("list", "{list}", "List token"),
            Param("limit", "50", "Page size"),
        ),
    ),
    Operation(
        slug="cancel",
        title="Cancel a message",
        method="POST",
        path="/api/v1/messages/{message_id}/cancel",
        summary="Only while it is still queued; the credit is refunded.",
        path_params=(Param("message_id", "{message_id}", "The message to cancel", required=True),),
    ),
    Operation(
        slug="balance",
        title="Credit balance",
        method="GET",
        path="/api/v1/balance",
        summary="The account's credit and its price per SMS part.",
    ),
    Operation(
        slug="lists",
        title="Lists",
        method="GET",
        path="/api/v1/lists",
        summary="Your lists of phones, with their tokens and phone counts.",
    ),
    Operation(
        slug="devices",
        title="Phones",
        method="GET",
        path="/api/v1/devices",
        summary="Phones with their online, available and battery state.",
        body="query",
        params=(Param("list", "{list}", "Only the phones of this list"),),
    ),
    Operation(
        slug="inbox",
        title="Inbox",
        method="GET",
        path="/api/v1/inbox",
        summary="SMS received by your phones (each stored once per list).",
        body="query",
        params=(Param("list", "{list}", "Only this list"),),
    ),
    Operation(
        slug="ipn_get",
        title="IPN settings",
        method="GET",
        path="/api/v1/ipn",
        summary="Callback URL, events, format and the current signing secret.",
    ),
    Operation(
        slug="ipn_update",
        title="Change IPN settings",
        method="PUT",
        path="/api/v1/ipn",
        summary="Set the URL, switch callbacks on, choose events and format.",
        body="json",
        json_example={
            "url": "{ipn_url}",
            "enabled": True,
            "events": ["message.sent", "message.delivered", "message.failed"],
            "format": "standard",
        },
        params=(
            Param("url", "{ipn_url}", "Your receiver (https)"),
            Param("enabled", "true", "Switch callbacks on or off"),
            Param("events", "[…]", "Event types; empty = all"),
            Param("format", "standard", "standard (signed JSON) or geniosms (form fields)"),
        ),
    ),
    Operation(
        slug="ipn_test",
        title="Send a test IPN",
        method="POST",
        path="/api/v1/ipn/test",
        summary="Sends a signed `test` event to your receiver and returns its answer.",
    ),
    Operation(
        slug="ipn_events",
        title="IPN delivery log",
        method="GET",
        path="/api/v1/ipn/events",
        summary="Recent events with their delivery status and attempts.",
    ),
    Operation(
        slug="ipn_replay",
        title="Replay an IPN event",
        method="POST",
        path="/api/v1/ipn/events/{webhook_id}/replay",
        summary="Delivers one event again now, with its original webhook-id.",
        path_params=(Param("webhook_id", "{webhook_id}", "The event's webhook-id", required=True),),
    ),
    Operation(
        slug="broadcast",
        title="Broadcast to subscribers",
        method="POST",
        path="/api/v1/lists/{list}/broadcast",
        summary="One text to every current subscriber of the list (people who texted OK).",
        body="form",
        params=(Param("msg", "Tonight's concert starts at 21:00", "The text", required=True),),
        path_params=(Param("list", "{list}", "List token", required=True),),
    ),
    Operation(
        slug="subscribers",
        title="List subscribers",
        method="GET",
        path="/api/v1/lists/{list}/subscribers",
        summary="Newest first, with cursor pages; `state=all` adds those who left. CSV: …/subscribers.csv.",
        path_params=(Param("list", "{list}", "List token", required=True),),
    ),
    Operation(
        slug="subscribers_add",
        title="Add subscribers",
        method="POST",
        path="/api/v1/lists/{list}/subscribers",
        summary="One `number` or many `numbers`; national numbers are read in the list's country.",
        body="json",
        json_example={"numbers": ["+393331234567", "3337654321"]},
        params=(Param("numbers", "[…]", "The numbers to add (or `number` for one)", required=True),),
        path_params=(Param("list", "{list}", "List token", required=True),),
    ),
    Operation(
        slug="subscriber_remove",
        title="Remove a subscriber",
        method="DELETE",
        path="/api/v1/lists/{list}/subscribers/+393331234567",
        summary="Takes one number off the list, as if they had texted DEL.",
        path_params=(
            Param("list", "{list}", "List token", required=True),
            Param("number", "+393331234567", "The subscriber's number", required=True),
        ),
    ),
    Operation(
        slug="geniosms",
        title="Send (GenioSms-compatible)",
        method="GET",
        path="/tools/api.pl",
        summary="For code written for GenioSms: change only the host. Same answer as /api/v1/send.",
        body="query",
        auth="param",
        params=(
            Param("to", "+393331234567", "Destination number", required=True),
            Param("msg", "Your code is 123456", "The text", required=True),
            Param("custom", "order-42", "Your reference, echoed in IPN"),
        ),
    ),
)
RECEIVER = Operation(
    slug="ipn_receiver",
    title="IPN receiver",
    method="POST",
    path="(your server)",
    summary="Receive signed callbacks: verify `webhook-signature` over id.timestamp.body, answer 2xx.",
)
OPERATIONS_BY_SLUG = {op.slug: op for op in (*OPERATIONS, RECEIVER)}


# --- String literals per language ------------------------------------------------------


def dq(value: str) -> str:
    """A double-quoted literal valid in Python, JS, Java, C#, Go and Ruby (no interpolation)."""
    return json.dumps(value, ensure_ascii=False)


def rb(value: str) -> str:
    """A Ruby double-quoted literal: as `dq`, with interpolation escaped."""
    return dq(value).replace("#{", "\\#{")


def php(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _php_value(value: Any, indent: int = 0) -> str:
    """A PHP array literal for a JSON-like value."""
    pad = "    " * (indent + 1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return php(value)
    if isinstance(value, list):
        items = [pad + _php_value(item, indent + 1) for item in value]
    else:
        items = [f"{pad}{php(str(k))} => {_php_value(v, indent + 1)}" for k, v in value.items()]
    return "[\n" + ",\n".join(items) + ",\n" + "    " * indent + "]"


def _py_value(value: Any, indent: int = 0) -> str:
    """A Python literal for a JSON-like value, one item a line."""
    pad = "    " * (indent + 1)
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, str):
        return dq(value)
    if isinstance(value, list):
        items = [pad + _py_value(item, indent + 1) for item in value]
        return "[\n" + ",\n".join(items) + ",\n" + "    " * indent + "]"
    items = [f"{pad}{dq(str(k))}: {_py_value(v, indent + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + ",\n" + "    " * indent + "}"


# --- Filling an operation with the account's values ------------------------------------


@dataclass(frozen=True)
class Call:
    """An operation with every example value filled in: what each language renders."""

    method: str
    url: str
    body: str
    fields: tuple[tuple[str, str], ...]
    json_body: Any
    api_key: str
    auth: str

    @property
    def json_text(self) -> str:
        return json.dumps(self.json_body, ensure_ascii=False)


def _fill_json(value: Any, context: Context) -> Any:
    if isinstance(value, str):
        return context.fill(value)
    if isinstance(value, list):
        return [_fill_json(item, context) for item in value]
    if isinstance(value, dict):
        return {k: _fill_json(v, context) for k, v in value.items()}
    return value


def build_call(op: Operation, context: Context) -> Call:
    """The concrete request an example makes."""
    url = context.base_url.rstrip("/") + context.fill(op.path)
    fields = tuple((p.name, context.fill(p.example)) for p in op.params) if op.body in ("form", "query") else ()
    body = op.body
    if op.auth == "param":
        fields = (("api", context.api_key), *fields)
    if body == "query":
        url = f"{url}?{urlencode(fields)}"
        fields, body = (), ""
    json_body = _fill_json(op.json_example, context) if body == "json" else None
    return Call(op.method, url, body, fields, json_body, context.api_key, op.auth)


# --- The generators ----------------------------------------------------------------------


def _curl(call: Call) -> str:
    lines = [f"curl -sS -X {call.method} {sh(call.url)}"]
    if call.auth == "bearer":
        lines.append(f"-H {sh('Authorization: Bearer ' + call.api_key)}")
    if call.body == "form":
        lines += [f"--data-urlencode {sh(f'{k}={v}')}" for k, v in call.fields]
    elif call.body == "json":
        lines += ['-H "Content-Type: application/json"', f"--data {sh(call.json_text)}"]
    return " \\\n  ".join(lines) + "\n"


def _python(call: Call) -> str:
    out = ["import json", "import urllib.error", "import urllib.parse", "import urllib.request", ""]
    out.append(f"API_KEY = {dq(call.api_key)}")
    data = "None"
    headers = '{"Authorization": f"Bearer {API_KEY}"}' if call.auth == "bearer" else "{}"
    if call.body == "form":
        items = "".join(f"    {dq(k)}: {dq(v)},\n" for k, v in call.fields)
        out.append("data = urllib.parse.urlencode({\n" + items + "}).encode()")
        data = "data"
    elif call.body == "json":
        out.append(f"data = json.dumps({_py_value(call.json_body)}).encode()")
        data = "data"
        headers = headers[:-1] + ', "Content-Type": "application/json"}' if headers != "{}" else headers
    out += [
        "request = urllib.request.Request(",
        f"    {dq(call.url)},",
        f"    data={data},",
        f"    method={dq(call.method)},",
        f"    headers={headers},",
        ")",
        "try:",
        "    with urllib.request.urlopen(request, timeout=30) as response:",
        "        print(json.load(response))",
        "except urllib.error.HTTPError as error:  # refusals carry the same JSON envelope",
        "    print(json.load(error))",
    ]
    return "\n".join(out) + "\n"


def _php(call: Call) -> str:
    out = ["<?php", f"$apiKey = {php(call.api_key)};", f"$ch = curl_init({php(call.url)});"]
    headers = ['"Authorization: Bearer " . $apiKey'] if call.auth == "bearer" else []
    options = ["    CURLOPT_RETURNTRANSFER => true,"]
    if call.method != "GET":
        options.append(f"    CURLOPT_CUSTOMREQUEST => {php(call.method)},")
    if call.body == "form":
        options.append(f"    CURLOPT_POSTFIELDS => http_build_query({_php_value(dict(call.fields), 1)}),")
    elif call.body == "json":
        options.append(f"    CURLOPT_POSTFIELDS => json_encode({_php_value(call.json_body, 1)}),")
        headers.append("'Content-Type: application/json'")
    if headers:
        options.append("    CURLOPT_HTTPHEADER => [" + ", ".join(headers) + "],")
    out += ["curl_setopt_array($ch, [", *options, "]);"]
    out += [
        "$response = curl_exec($ch);",
        "if ($response === false) {",
        '    fwrite(STDERR, curl_error($ch) . "\\n");',
        "    exit(1);",
        "}",
        "curl_close($ch);",
        'echo $response, "\\n";',
    ]
    return "\n".join(out) + "\n"


def _node(call: Call) -> str:
    headers = ["Authorization: `Bearer ${apiKey}`"] if call.auth == "bearer" else []
    options = [f"    method: {dq(call.method)},"]
    if call.body == "form":
        items = "".join(f"      {dq(k)}: {dq(v)},\n" for k, v in call.fields)
        options.append("    body: new URLSearchParams({\n" + items + "    }),")
    elif call.body == "json":
        body = json.dumps(call.json_body, ensure_ascii=False, indent=2).replace("\n", "\n    ")
        options.append(f"    body: JSON.stringify({body}),")
        headers.append('"Content-Type": "application/json"')
    if headers:
        options.append("    headers: { " + ", ".join(headers) + " },")
    out = [
        "// Node.js 18+ (built-in fetch)",
        f"const apiKey = {dq(call.api_key)};",
        "",
        "async function main() {",
        f"  const response = await fetch({dq(call.url)}, {{",
        *options,
        "  });",
        "  console.log(await response.json());",
        "}",
        "",
        "main().catch((error) => {",
        "  console.error(error);",
        "  process.exit(1);",
        "});",
    ]
    return "\n".join(out) + "\n"


def _java(call: Call) -> str:
    imports = [
        "java.net.URI",
        "java.net.http.HttpClient",
        "java.net.http.HttpRequest",
        "java.net.http.HttpResponse",
    ]
    body_lines: list[str] = []
    publisher = "HttpRequest.BodyPublishers.noBody()"
    content_type = ""
    if call.body == "form":
        imports += [
            "java.net.URLEncoder",
            "java.nio.charset.StandardCharsets",
            "java.util.LinkedHashMap",
            "java.util.Map",
            "java.util.stream.Collectors",
        ]
        body_lines.append("        Map<String, String> params = new LinkedHashMap<>();")
        body_lines += [f"        params.put({dq(k)}, {dq(v)});" for k, v in call.fields]
        body_lines += [
            "        String form = params.entrySet().stream()",
            '            .map(e -> URLEncoder.encode(e.getKey(), StandardCharsets.UTF_8) + "="',
            "                + URLEncoder.encode(e.getValue(), StandardCharsets.UTF_8))",
            '            .collect(Collectors.joining("&"));',
        ]
        publisher = "HttpRequest.BodyPublishers.ofString(form)"
        content_type = "application/x-www-form-urlencoded"
    elif call.body == "json":
        body_lines.append(f"        String json = {dq(call.json_text)};")
        publisher = "HttpRequest.BodyPublishers.ofString(json)"
        content_type = "application/json"
    builder = [f"        HttpRequest request = HttpRequest.newBuilder(URI.create({dq(call.url)}))"]
    if call.auth == "bearer":
        builder.append('            .header("Authorization", "Bearer " + apiKey)')
    if content_type:
        builder.append(f'            .header("Content-Type", {dq(content_type)})')
    builder += [f"            .method({dq(call.method)}, {publisher})", "            .build();"]
    out = [f"import {name};" for name in sorted(imports)]
    out += [
        "",
        "// Java 11+: save as PhonefleetExample.java and run `java PhonefleetExample.java`",
        "public class PhonefleetExample {",
        "    public static void main(String[] args) throws Exception {",
        f"        String apiKey = {dq(call.api_key)};",
        *body_lines,
        *builder,
        "        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();",
        "        HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());",
        "        System.out.println(response.body());",
        "    }",
        "}",
    ]
    return "\n".join(out) + "\n"


def _csharp(call: Call) -> str:
    usings = ["System", "System.Net.Http", "System.Threading.Tasks"]
    lines = []
    if call.auth == "bearer":
        lines.append('        client.DefaultRequestHeaders.Add("Authorization", "Bearer " + apiKey);')
    content = "null"
    if call.body == "form":
        usings.append("System.Collections.Generic")
        items = "".join(f"            [{dq(k)}] = {dq(v)},\n" for k, v in call.fields)
        lines.append("        var content = new FormUrlEncodedContent(new Dictionary<string, string>\n        {\n")
        lines[-1] += items + "        });"
        content = "content"
    elif call.body == "json":
        usings.append("System.Text")
        lines.append(f"        var json = {dq(call.json_text)};")
        lines.append('        var content = new StringContent(json, Encoding.UTF8, "application/json");')
        content = "content"
    method = {
        "GET": "HttpMethod.Get",
        "POST": "HttpMethod.Post",
        "PUT": "HttpMethod.Put",
        "DELETE": "HttpMethod.Delete",
    }[call.method]
    lines += [
        f"        var request = new HttpRequestMessage({method}, {dq(call.url)}) {{ Content = {content} }};",
        "        var response = await client.SendAsync(request);",
        "        Console.WriteLine(await response.Content.ReadAsStringAsync());",
    ]
    out = [f"using {name};" for name in sorted(usings)]
    out += [
        "",
        "class PhonefleetExample",
        "{",
        "    static async Task Main()",
        "    {",
        f"        var apiKey = {dq(call.api_key)};",
        "        using var client = new HttpClient();",
        *lines,
        "    }",
        "}",
    ]
    return "\n".join(out) + "\n"


def _go(call: Call) -> str:
    imports = {"fmt", "io", "net/http"}
    lines = [f"\tapiKey := {dq(call.api_key)}"]
    if call.auth != "bearer":
        lines[0] = f"\t_ = {dq(call.api_key)} // the key travels in the URL's `api` parameter"
    reader = "nil"
    content_type = ""
    if call.body == "form":
        imports |= {"net/url", "strings"}
        lines.append("\tform := url.Values{}")
        lines += [f"\tform.Set({dq(k)}, {dq(v)})" for k, v in call.fields]
        reader = "strings.NewReader(form.Encode())"
        content_type = "application/x-www-form-urlencoded"
    elif call.body == "json":
        imports.add("strings")
        lines.append(f"\tbody := {dq(call.json_text)}")
        reader = "strings.NewReader(body)"
        content_type = "application/json"
    lines += [
        f"\treq, err := http.NewRequest({dq(call.method)}, {dq(call.url)}, {reader})",
        "\tif err != nil {",
        "\t\tpanic(err)",
        "\t}",
    ]
    if call.auth == "bearer":
        lines.append('\treq.Header.Set("Authorization", "Bearer "+apiKey)')
    if content_type:
        lines.append(f'\treq.Header.Set("Content-Type", {dq(content_type)})')
    lines += [
        "\tresp, err := http.DefaultClient.Do(req)",
        "\tif err != nil {",
        "\t\tpanic(err)",
        "\t}",
        "\tdefer resp.Body.Close()",
        "\tanswer, _ := io.ReadAll(resp.Body)",
        "\tfmt.Println(string(answer))",
    ]
    out = ["package main", "", "import (", *[f"\t{dq(name)}" for name in sorted(imports)], ")", "", "func main() {"]
    out += [*lines, "}"]
    return "\n".join(out) + "\n"


def _ruby(call: Call) -> str:
    out = ['require "net/http"', 'require "uri"']
    if call.body == "json":
        out.append('require "json"')
    out += ["", f"api_key = {rb(call.api_key)}", f"uri = URI({rb(call.url)})"]
    out.append(f"request = Net::HTTP::{call.method.capitalize()}.new(uri)")
    if call.auth == "bearer":
        out.append('request["Authorization"] = "Bearer #{api_key}"')
    if call.body == "form":
        pairs = ",\n".join(f"  {rb(k)} => {rb(v)}" for k, v in call.fields)
        out.append("request.set_form_data(\n" + pairs + "\n)")
    elif call.body == "json":
        out.append('request["Content-Type"] = "application/json"')
        out.append(f"request.body = {rb(call.json_text)}")
    out += [
        'response = Net::HTTP.start(uri.hostname, uri.port, use_ssl: uri.scheme == "https") do |http|',
        "  http.request(request)",
        "end",
        "puts response.body",
    ]
    return "\n".join(out) + "\n"


GENERATORS: dict[str, Callable[[Call], str]] = {
    "curl": _curl,
    "python": _python,
    "php": _php,
    "node": _node,
    "java": _java,
    "csharp": _csharp,
    "go": _go,
    "ruby": _ruby,
}


def _receiver(lang: str, context: Context) -> str:
    if lang == "curl":
        test = build_call(OPERATIONS_BY_SLUG["ipn_test"], context)
        return "# Ask Phonefleet to send a signed test event to your receiver:\n" + _curl(test)
    literal = php(context.ipn_secret) if lang == "php" else dq(context.ipn_secret)
    code = receivers.RECEIVERS[lang].replace("SECRET_LITERAL", literal)
    return code.replace("RECEIVER_PORT", str(context.receiver_port))


def render(op: Operation, lang: str, context: Context) -> str:
    """The ready-to-run example of `op` in `lang` (a key of LANGUAGES)."""
    if op.slug == RECEIVER.slug:
        return _receiver(lang, context)
    return GENERATORS[lang](build_call(op, context))


def render_all(op: Operation, context: Context) -> dict[str, str]:
    """Every language's example of one operation, in LANGUAGES order."""
    return {lang: render(op, lang, context) for lang in LANGUAGES}


def examples(op: Operation, context: Context) -> list[dict[str, str]]:
    """Every language's example of one operation, labelled, as the panel's code tabs show them."""
    return [{"lang": lang, "label": LANGUAGES[lang], "code": code} for lang, code in render_all(op, context).items()]


def with_key(context: Context, api_key: str | None) -> Context:
    return replace(context, api_key=api_key or KEY_PLACEHOLDER)

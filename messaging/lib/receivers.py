"""IPN receiver examples: verify a Standard Webhooks signature and answer 2xx.

The same algorithm in seven languages (cURL has none: the developers page shows it the
test-event call instead). `SECRET_LITERAL` is replaced by the account's secret, quoted
for the language, and `RECEIVER_PORT` by the port to listen on. Django-free.
"""

from __future__ import annotations

RECEIVERS: dict[str, str] = {
    "python": """\
# Python 3.9+, standard library only: python receiver.py, then set the IPN URL to this server.
import base64
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = base64.b64decode(SECRET_LITERAL.removeprefix("whsec_"))


def verify(headers, body: bytes) -> bool:
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False  # stale or missing timestamp: a replayed request
    signed = f"{msg_id}.{timestamp}.".encode() + body  # the exact bytes received
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, sig.partition(",")[2]) for sig in headers.get("webhook-signature", "").split()
    )


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(self.headers, body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)  # de-duplicate on the webhook-id header: delivery is at least once
        print(event["type"], event.get("data"))
        self.send_response(204)
        self.end_headers()


HTTPServer(("", RECEIVER_PORT), Receiver).serve_forever()
""",
    "php": """\
<?php
// ipn.php: verify the signature over id.timestamp.body, then handle the event.
$secret = base64_decode(substr(SECRET_LITERAL, 6));
$id = $_SERVER['HTTP_WEBHOOK_ID'] ?? '';
$timestamp = $_SERVER['HTTP_WEBHOOK_TIMESTAMP'] ?? '';
$body = file_get_contents('php://input');
$expected = base64_encode(hash_hmac('sha256', $id . '.' . $timestamp . '.' . $body, $secret, true));
$valid = false;
foreach (explode(' ', $_SERVER['HTTP_WEBHOOK_SIGNATURE'] ?? '') as $signature) {
    $parts = explode(',', $signature, 2);
    if (count($parts) === 2 && hash_equals($expected, $parts[1])) {
        $valid = true;
    }
}
if (!$valid || abs(time() - (int) $timestamp) > 300) {
    http_response_code(401);
    exit;
}
$event = json_decode($body, true);  // GenioSms format: use $_POST['status'], $_POST['id_smsout']...
error_log($event['type'] . ' ' . json_encode($event['data']));
http_response_code(204);
""",
    "node": """\
// Node.js 18+, no dependencies: node receiver.js
const http = require("http");
const crypto = require("crypto");

const secret = Buffer.from(SECRET_LITERAL.slice("whsec_".length), "base64");

function verify(headers, body) {
  const id = headers["webhook-id"] || "";
  const timestamp = headers["webhook-timestamp"] || "";
  if (!/^\\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = crypto.createHmac("sha256", secret).update(`${id}.${timestamp}.`).update(body).digest();
  return (headers["webhook-signature"] || "").split(" ").some((sig) => {
    const given = Buffer.from(sig.split(",")[1] || "", "base64");
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (!verify(req.headers, body)) {
      res.writeHead(401).end();
      return;
    }
    const event = JSON.parse(body.toString("utf8"));
    console.log(event.type, event.data);
    res.writeHead(204).end();
  });
}).listen(RECEIVER_PORT);
""",
    "java": """\
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

// Java 11+: java IpnReceiver.java
public class IpnReceiver {
    static final byte[] SECRET = Base64.getDecoder().decode(SECRET_LITERAL.substring(6));

    static boolean verify(String id, String timestamp, String signatures, byte[] body) throws Exception {
        if (timestamp == null || Math.abs(System.currentTimeMillis() / 1000 - Long.parseLong(timestamp)) > 300) {
            return false;
        }
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(SECRET, "HmacSHA256"));
        mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
        byte[] expected = mac.doFinal(body);
        for (String sig : (signatures == null ? "" : signatures).split(" ")) {
            String[] parts = sig.split(",", 2);
            if (parts.length == 2 && MessageDigest.isEqual(expected, Base64.getDecoder().decode(parts[1]))) {
                return true;
            }
        }
        return false;
    }

    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(RECEIVER_PORT), 0);
        server.createContext("/", exchange -> {
            byte[] body = exchange.getRequestBody().readAllBytes();
            var h = exchange.getRequestHeaders();
            boolean ok;
            try {
                ok = verify(h.getFirst("webhook-id"), h.getFirst("webhook-timestamp"),
                    h.getFirst("webhook-signature"), body);
            } catch (Exception e) {
                ok = false;
            }
            if (ok) {
                System.out.println(new String(body, StandardCharsets.UTF_8));
            }
            exchange.sendResponseHeaders(ok ? 204 : 401, -1);
            exchange.close();
        });
        server.start();
    }
}
""",
    "csharp": """\
// .NET 6+ minimal web app (dotnet new web), Program.cs
using System.Security.Cryptography;
using System.Text;

var secret = Convert.FromBase64String(SECRET_LITERAL.Substring(6));
var app = WebApplication.Create(args);

app.MapPost("/phonefleet/ipn", async (HttpRequest request) =>
{
    using var reader = new StreamReader(request.Body, Encoding.UTF8);
    var body = await reader.ReadToEndAsync();
    string id = request.Headers["webhook-id"], timestamp = request.Headers["webhook-timestamp"];
    if (!long.TryParse(timestamp, out var ts) || Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - ts) > 300)
        return Results.Unauthorized();
    using var hmac = new HMACSHA256(secret);
    var expected = hmac.ComputeHash(Encoding.UTF8.GetBytes($"{id}.{timestamp}.{body}"));
    foreach (var sig in request.Headers["webhook-signature"].ToString().Split(' '))
    {
        var parts = sig.Split(',', 2);
        if (parts.Length == 2 && CryptographicOperations.FixedTimeEquals(expected, Convert.FromBase64String(parts[1])))
        {
            Console.WriteLine(body);
            return Results.NoContent();
        }
    }
    return Results.Unauthorized();
});

app.Run("http://0.0.0.0:RECEIVER_PORT");
""",
    "go": """\
package main

import (
\t"crypto/hmac"
\t"crypto/sha256"
\t"encoding/base64"
\t"fmt"
\t"io"
\t"math"
\t"net/http"
\t"strconv"
\t"strings"
\t"time"
)

var secret, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(SECRET_LITERAL, "whsec_"))

func verify(r *http.Request, body []byte) bool {
\tid, timestamp := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
\tts, err := strconv.ParseInt(timestamp, 10, 64)
\tif err != nil || math.Abs(float64(time.Now().Unix()-ts)) > 300 {
\t\treturn false
\t}
\tmac := hmac.New(sha256.New, secret)
\tmac.Write([]byte(id + "." + timestamp + "."))
\tmac.Write(body)
\texpected := mac.Sum(nil)
\tfor _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
\t\tparts := strings.SplitN(sig, ",", 2)
\t\tgiven, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
\t\tif len(parts) == 2 && err == nil && hmac.Equal(given, expected) {
\t\t\treturn true
\t\t}
\t}
\treturn false
}

func main() {
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
\t\tbody, _ := io.ReadAll(r.Body)
\t\tif !verify(r, body) {
\t\t\tw.WriteHeader(http.StatusUnauthorized)
\t\t\treturn
\t\t}
\t\tfmt.Println(string(body))
\t\tw.WriteHeader(http.StatusNoContent)
\t})
\thttp.ListenAndServe(":RECEIVER_PORT", nil)
}
""",
    "ruby": """\
# Ruby 3 with the webrick gem (gem install webrick): ruby receiver.rb
require "base64"
require "json"
require "openssl"
require "webrick"

SECRET = Base64.decode64(SECRET_LITERAL.delete_prefix("whsec_"))

def verify(id, timestamp, signatures, body)
  return false unless timestamp.to_s.match?(/\\A\\d+\\z/) && (Time.now.to_i - timestamp.to_i).abs <= 300
  expected = Base64.strict_encode64(OpenSSL::HMAC.digest("SHA256", SECRET, "#{id}.#{timestamp}.#{body}"))
  signatures.to_s.split(" ").any? { |sig| OpenSSL.secure_compare(expected, sig.split(",", 2)[1].to_s) }
end

server = WEBrick::HTTPServer.new(Port: RECEIVER_PORT)
server.mount_proc "/" do |req, res|
  if verify(req["webhook-id"], req["webhook-timestamp"], req["webhook-signature"], req.body)
    event = JSON.parse(req.body)
    puts "#{event["type"]} #{event["data"]}"
    res.status = 204
  else
    res.status = 401
  end
end
server.start
""",
}

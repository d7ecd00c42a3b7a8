// The official SMSGate JavaScript client (npm `android-sms-gateway`, pinned in
// package-lock.json, unmodified) against a live Phonefleet, as an SMSGate user runs it:
// only the base URL differs. Run by tests/smsgate_clients/test_js_client.py; prints one
// JSON object with what it saw. The webhook receiver is a plain Node server that checks
// each request's signature exactly as SMSGate's webhook docs tell receivers to (the
// client has no helper for it): hex HMAC-SHA256 over the raw body followed by X-Timestamp.
//
// usage: node run.mjs <base URL> <login> <password> <phone> <phone>

import Client from "android-sms-gateway";
import crypto from "node:crypto";
import http from "node:http";

const [baseUrl, login, password, ...phoneNumbers] = process.argv.slice(2);

// The HttpClient the library asks its user to supply (its README's fetch example).
const httpClient = {
  async request(method, url, body, headers) {
    const answer = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await answer.text();
    if (!answer.ok) throw new Error(`${method} ${url}: HTTP ${answer.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  },
  get(url, headers) { return this.request("GET", url, undefined, headers); },
  post(url, body, headers) { return this.request("POST", url, body, headers); },
  put(url, body, headers) { return this.request("PUT", url, body, headers); },
  patch(url, body, headers) { return this.request("PATCH", url, body, headers); },
  delete(url, headers) { return this.request("DELETE", url, undefined, headers); },
};

function verifySignature(secretKey, payload, timestamp, signature) {
  const expected = crypto.createHmac("sha256", secretKey).update(payload + timestamp).digest("hex");
  return expected.length === signature.length && crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
}

const deadline = (seconds) => Date.now() + seconds * 1000;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const received = [];
let signingKey = "";
const receiver = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const timestamp = request.headers["x-timestamp"] ?? "";
    received.push({
      body: JSON.parse(raw),
      verified: verifySignature(signingKey, raw, timestamp, request.headers["x-signature"] ?? ""),
      tampered: verifySignature(signingKey, raw + " ", timestamp, request.headers["x-signature"] ?? ""),
      skewSeconds: Math.abs(Date.now() / 1000 - Number(timestamp)),
    });
    response.writeHead(200).end("ok");
  });
});
await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
const hookUrl = `http://127.0.0.1:${receiver.address().port}/sms-events`;

const client = new Client(login, password, httpClient, baseUrl);
const out = {};
try {
  out.health = await client.getHealth();
  const settings = await client.getSettings();
  signingKey = settings.webhooks?.signing_key ?? settings.webhooks?.signingKey ?? "";
  out.signingKeyShown = signingKey !== "";

  const hooks = [];
  for (const event of ["sms:sent", "sms:delivered"]) {
    hooks.push(await client.registerWebhook({ event, url: hookUrl }));
  }
  out.registered = hooks;
  try {
    await client.registerWebhook({ event: "mms:received", url: hookUrl });
    out.refusedMms = null;
  } catch (error) {
    out.refusedMms = String(error.message);
  }
  out.listed = await client.getWebhooks();

  const sent = await client.send({ message: "Hello from the SMSGate JS client", phoneNumbers });
  out.sent = sent;
  let state = sent;
  for (const until = deadline(20); state.state !== "Delivered" && Date.now() < until; await pause(100)) {
    state = await client.getState(sent.id);
  }
  out.final = state;

  for (const until = deadline(20); received.length < 4 && Date.now() < until; await pause(50));
  out.received = received;
  out.devices = await client.getDevices();

  await client.deleteWebhook(hooks[0].id);
  out.afterDelete = await client.getWebhooks();
  await client.deleteWebhook(hooks[1].id);
} catch (error) {
  out.error = String(error.stack ?? error);
} finally {
  receiver.close();
}
console.log(JSON.stringify(out));

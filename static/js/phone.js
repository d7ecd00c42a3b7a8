// The virtual phone: joins a list, keeps a WebSocket open and speaks the phone frames
// of the protocol in docs/device-protocol.md (hello, offer, claim, assign, taken, report, ack, state, incoming, ping).
(function () {
  "use strict";
  var STORE = "phonefleet.virtual-phone";
  var root = document.getElementById("virtual-phone");
  var joinForm = document.getElementById("join-form");
  var stateBox = document.getElementById("phone-state");
  var offersBox = document.getElementById("offers");
  var logBox = document.getElementById("frame-log");
  var available = document.getElementById("available");
  var auto = document.getElementById("auto");
  var incomingButton = document.getElementById("incoming-send");
  var phone = null, socket = null, pinger = null, retry = 0, cards = {};

  function log(direction, frame) {
    var line = document.createElement("div");
    line.textContent = new Date().toLocaleTimeString() + " " + direction + " " + JSON.stringify(frame);
    logBox.prepend(line);
    while (logBox.childNodes.length > 200) logBox.lastChild.remove();
  }
  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify(frame));
    if (frame.type !== "ping") log("→", frame);
  }
  function setConnected(on, text) {
    document.getElementById("conn-dot").className = "dot " + (on ? "online" : "offline");
    document.getElementById("conn-text").textContent = text;
    incomingButton.disabled = !on;
  }
  function sendState() { send({ type: "state", available: available.checked, battery: 87, signal: -70 }); }

  function card(frame) {
    var id = frame.message_id, el = cards[id];
    if (!el) {
      if (!Object.keys(cards).length) offersBox.innerHTML = "";
      el = document.createElement("div");
      el.className = "offer";
      el.id = "offer-" + id;
      el.innerHTML = "<div><span class='badge status'></span> <span class='mono small id'></span></div>" +
        "<div><strong class='to mono'></strong> <span class='msg'></span></div><div class='actions'></div>";
      el.querySelector(".id").textContent = id;
      offersBox.prepend(el);
      cards[id] = el;
    }
    if (frame.to) el.querySelector(".to").textContent = frame.to;
    if (frame.msg) el.querySelector(".msg").textContent = frame.msg;
    return el;
  }
  function setStatus(el, status, buttons) {
    var badge = el.querySelector(".status");
    badge.textContent = status;
    badge.className = "badge status " + status.split(" ")[0];
    el.dataset.status = status;
    var actions = el.querySelector(".actions");
    actions.innerHTML = "";
    (buttons || []).forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "small" + (b.danger ? " danger" : "");
      button.textContent = b.label;
      button.dataset.action = b.action;
      button.addEventListener("click", b.run);
      actions.appendChild(button);
    });
  }
  function report(id, status) {
    var frame = { type: "report", message_id: id, status: status, at: new Date().toISOString() };
    if (status === "failed") frame.error = "Simulated failure on the virtual phone";
    send(frame);
    setStatus(cards[id], "reporting " + status);
  }
  function claim(id) { send({ type: "claim", message_id: id }); setStatus(cards[id], "claiming"); }
  function outcomeButtons(id, status) {
    if (status === "sent") return [{ label: "Mark delivered", action: "delivered", run: function () { report(id, "delivered"); } }];
    return [
      { label: "Mark sent", action: "sent", run: function () { report(id, "sent"); } },
      { label: "Mark failed", action: "failed", danger: true, run: function () { report(id, "failed"); } },
    ];
  }

  var handlers = {
    hello: function (f) {
      document.getElementById("phone-ids").textContent = f.device_id + " · list " + f.list;
      setConnected(true, "Online");
      retry = 0;
      sendState();
    },
    offer: function (f) {
      var el = card(f);
      if (el.dataset.status && el.dataset.status !== "offered") return;
      setStatus(el, "offered", [{ label: "Claim", action: "claim", run: function () { claim(f.message_id); } }]);
      if (auto.checked && available.checked) claim(f.message_id);
    },
    assign: function (f) {
      var el = card(f);
      setStatus(el, "assigned", outcomeButtons(f.message_id, "assigned"));
      if (auto.checked) setTimeout(function () { report(f.message_id, "sent"); }, 300);
    },
    taken: function (f) {
      if (cards[f.message_id]) setStatus(cards[f.message_id], "taken by another phone");
    },
    ack: function (f) {
      var el = cards[f.message_id];
      if (!el) return;
      if (f.status === "sent") {
        setStatus(el, "sent", outcomeButtons(f.message_id, "sent"));
        if (auto.checked) setTimeout(function () { report(f.message_id, "delivered"); }, 500);
      } else {
        setStatus(el, f.status);
      }
    },
    ping: function () { send({ type: "pong" }); },
    pong: function () {},
    error: function () {},
  };

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + phone.ws_url + "?token=" + encodeURIComponent(phone.device_token));
    setConnected(false, "Connecting…");
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type !== "pong") log("←", frame);
      (handlers[frame.type] || function () {})(frame);
    };
    socket.onclose = function (event) {
      clearInterval(pinger);
      if (event.code === 4403) {
        setConnected(false, "This phone was disabled or removed in the panel.");
        return;
      }
      // Reconnect with exponential backoff and full jitter (base 1 s, cap 60 s).
      var delay = Math.random() * Math.min(60000, 1000 * Math.pow(2, retry++));
      setConnected(false, "Offline — reconnecting…");
      setTimeout(connect, delay);
    };
    socket.onopen = function () {
      pinger = setInterval(function () { send({ type: "ping" }); }, 20000);
    };
  }

  function start(saved) {
    phone = saved;
    joinForm.hidden = true;
    stateBox.hidden = false;
    document.getElementById("phone-title").textContent = phone.name + " in “" + phone.list_name + "”";
    connect();
  }

  joinForm.addEventListener("submit", function (event) {
    event.preventDefault();
    fetch(root.dataset.joinUrl, { method: "POST", body: new FormData(joinForm), credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (answer) {
        if (!answer.ok) { alert(answer.body.error || "Could not join."); return; }
        var saved = answer.body;
        saved.name = joinForm.elements.name.value || "Virtual phone";
        try { localStorage.setItem(STORE, JSON.stringify(saved)); } catch (e) { /* private mode */ }
        start(saved);
      });
  });
  document.getElementById("forget").addEventListener("click", function () {
    try { localStorage.removeItem(STORE); } catch (e) { /* ignore */ }
    if (socket) { socket.onclose = null; socket.close(); }
    location.reload();
  });
  available.addEventListener("change", sendState);
  document.getElementById("incoming-form").addEventListener("submit", function (event) {
    event.preventDefault();
    send({
      type: "incoming",
      from: document.getElementById("incoming-from").value,
      msg: document.getElementById("incoming-msg").value,
      at: new Date().toISOString(),
    });
  });

  var saved = null;
  try { saved = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { saved = null; }
  var wanted = new URLSearchParams(location.search).get("pin");
  if (saved && !wanted) start(saved);
})();

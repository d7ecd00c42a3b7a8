// The virtual phone: joins a list, keeps a WebSocket open and speaks the phone frames
// of docs/device-protocol.md (hello, offer, claim, assign, taken, report, ack, state,
// incoming, ping). This browser keeps one phone: a reload reconnects it, and leaving or
// joining another list removes it, so the phone list does not fill with dead phones.
(function () {
  "use strict";
  var STORE = "phonefleet.virtual-phone", AUTO = "phonefleet.virtual-phone.auto";
  var root = document.getElementById("virtual-phone");
  var urls = root.dataset;
  var joinForm = document.getElementById("join-form");
  var stateBox = document.getElementById("phone-state");
  var offersBox = document.getElementById("offers");
  var logBox = document.getElementById("frame-log");
  var available = document.getElementById("available");
  var auto = document.getElementById("auto");
  var incomingButton = document.getElementById("incoming-send");
  var testButton = document.getElementById("test-sms");
  var csrf = joinForm.elements.csrfmiddlewaretoken.value;
  var phone = null, socket = null, pinger = null, retry = 0, cards = {};
  // Reports not yet acknowledged, in the order they were made. Like a real phone, the page
  // keeps them (across reloads too) and sends them again, in that order, after every
  // reconnect: the server applies one message's reports in the order they arrive.
  var OUTBOX = STORE + ".reports";
  var unacked = [];
  try { unacked = JSON.parse(localStorage.getItem(OUTBOX) || "[]"); } catch (e) { unacked = []; }

  function remember(key, value) {
    try { if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch (e) { /* private mode */ }
  }
  function post(url, fields) {
    var body = new FormData();
    body.append("csrfmiddlewaretoken", csrf);
    Object.keys(fields).forEach(function (name) { body.append(name, fields[name]); });
    return fetch(url, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (answer) { return { ok: r.ok, body: answer }; }); });
  }

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
    testButton.disabled = !on;
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
  function keepUnacked() { remember(OUTBOX, JSON.stringify(unacked)); }
  function isUnacked(id, status) {
    return unacked.some(function (f) { return f.message_id === id && f.status === status; });
  }
  function acked(id, status) {
    unacked = unacked.filter(function (f) { return !(f.message_id === id && (status === null || f.status === status)); });
    keepUnacked();
  }
  function sendUnacked() { unacked.forEach(send); }
  function report(id, status) {
    // The time is the moment it happened, kept when the report has to be sent again.
    var frame = { type: "report", message_id: id, status: status, at: new Date().toISOString() };
    if (status === "failed") frame.error = "Simulated failure on the virtual phone";
    unacked.push(frame);
    keepUnacked();
    send(frame);
    // Sent is sent, answer or not: its delivery can follow before the server answers.
    setStatus(cards[id], "reporting " + status, status === "sent" ? outcomeButtons(id, "sent") : []);
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
      sendUnacked();
      sendState();
    },
    offer: function (f) {
      var el = card(f), status = el.dataset.status || "";
      // Offered again after its holder's lease lapsed: it is open once more.
      if (status && status !== "offered" && status.indexOf("taken") !== 0) return;
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
      if (f.status === "received") return;
      acked(f.message_id, f.status);
      var el = cards[f.message_id];
      if (!el || isUnacked(f.message_id, "delivered")) return;  // its delivery report is on its way
      if (f.status === "sent") {
        setStatus(el, "sent", outcomeButtons(f.message_id, "sent"));
        if (auto.checked) setTimeout(function () { report(f.message_id, "delivered"); }, 500);
      } else {
        setStatus(el, f.status);
      }
    },
    ping: function () { send({ type: "pong" }); },
    pong: function () {},
    error: function (f) {
      // The server does not know the message (any more): its reports can never be stored.
      if (f.message_id) acked(f.message_id, null);
    },
  };

  // Cards still offering Claim: the panel says what became of their messages, so a card
  // whose message another phone took (or that was cancelled or expired) says so instead.
  function watchOffers() {
    var open = Object.keys(cards).filter(function (id) {
      var status = cards[id].dataset.status;
      return status === "offered" || status === "claiming";
    });
    if (!phone || !open.length || document.hidden) return;
    fetch(urls.offersUrl + "?ids=" + encodeURIComponent(open.join(",")), { credentials: "same-origin" })
      .then(function (r) { return r.ok && !r.redirected ? r.json() : Promise.reject(r.status); })
      .then(function (answer) {
        open.forEach(function (id) {
          var found = answer.messages[id], el = cards[id], status = el.dataset.status;
          if (!found || found.status === "queued" || found.device_id === phone.device_id) return;
          if (status !== "offered" && status !== "claiming") return;
          setStatus(el, found.device_name ? "taken by " + found.device_name : found.status);
        });
      })
      .catch(function () { /* asked again on the next beat */ });
  }
  setInterval(watchOffers, 2000);

  function stopped(text) {
    if (socket) { socket.onclose = null; socket.close(); }
    clearInterval(pinger);
    setConnected(false, text);
  }
  // The saved phone could not connect: removed in the panel (join again), disabled (wait
  // until it is enabled), or still there (keep reconnecting).
  function checkSaved(reconnect) {
    fetch(urls.statusUrl + "?device_id=" + encodeURIComponent(phone.device_id), { credentials: "same-origin" })
      .then(function (r) { return r.ok && !r.redirected ? r.json() : Promise.reject(r.status); })
      .then(function (answer) {
        if (answer.state === "gone") {
          stopped("This phone was removed from its list.");
          remember(STORE, null);
          showJoin("This browser's virtual phone was removed in the panel: join a list again.");
        } else if (answer.state === "disabled") {
          stopped("Disabled in the panel: enable it on the Phones page, then reload this page.");
        } else {
          reconnect();
        }
      })
      .catch(reconnect);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://", opened = false;
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
      if (event.code === 4409) {
        // Another tab took this phone over; reconnecting would take it back, and so on.
        setConnected(false, "This phone is open in another tab or window (reload here to use it here).");
        return;
      }
      // Reconnect with exponential backoff and full jitter (base 1 s, cap 60 s).
      function reconnect() {
        var delay = Math.random() * Math.min(60000, 1000 * Math.pow(2, retry++));
        setConnected(false, "Offline — reconnecting…");
        setTimeout(connect, delay);
      }
      // 4403, or refused at the handshake (a browser cannot see the 403): ask why.
      if (event.code === 4403 || !opened) checkSaved(reconnect);
      else reconnect();
    };
    socket.onopen = function () {
      opened = true;
      pinger = setInterval(function () {
        send({ type: "ping" });
        sendUnacked();  // a report the server could not store then is tried again
      }, 20000);
    };
  }

  function start(saved) {
    phone = saved;
    joinForm.hidden = true;
    stateBox.hidden = false;
    document.getElementById("phone-title").textContent = phone.name + " in “" + phone.list_name + "”";
    connect();
  }
  function showJoin(text, isNote) {
    var box = document.getElementById("join-error");
    box.textContent = text || "";
    box.className = isNote ? "help" : "field-error";
    box.hidden = !text;
    joinForm.hidden = false;
    stateBox.hidden = true;
  }
  // Removes this browser's phone from its list (the server forgets it too).
  function leave() {
    var old = phone;
    if (socket) { socket.onclose = null; socket.close(); }
    phone = null;
    remember(STORE, null);
    unacked = [];  // reports of a phone that leaves can never be stored
    remember(OUTBOX, null);
    if (!old) return Promise.resolve();
    return post(urls.leaveUrl, { device_id: old.device_id }).catch(function () { /* removed in the panel already */ });
  }

  joinForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var fields = { pin: joinForm.elements.pin.value, name: joinForm.elements.name.value };
    leave()
      .then(function () { return post(urls.joinUrl, fields); })
      .then(function (answer) {
        if (!answer.ok) { showJoin(answer.body.error || "Could not join."); return; }
        var joined = answer.body;
        joined.name = fields.name || "Virtual phone";
        remember(STORE, JSON.stringify(joined));
        start(joined);
      })
      .catch(function () { showJoin("The server could not be reached; try again."); });
  });
  document.getElementById("forget").addEventListener("click", function () {
    leave().then(function () { location.href = location.pathname; });
  });
  testButton.addEventListener("click", function () {
    var box = document.getElementById("test-sms-result");
    testButton.disabled = true;
    post(urls.testUrl, { device_id: phone.device_id })
      .then(function (answer) {
        box.textContent = "";
        box.className = answer.ok ? "help" : "field-error";
        if (!answer.ok) { box.textContent = answer.body.error || "Could not send the test SMS."; return; }
        var link = document.createElement("a");
        link.href = answer.body.url;
        link.textContent = answer.body.message_id;
        box.append("Queued ", link, " (" + answer.body.cost + " credit" + (answer.body.cost === 1 ? "" : "s") + ").");
      })
      .catch(function () { box.className = "field-error"; box.textContent = "The server could not be reached."; })
      .then(function () { testButton.disabled = !socket || socket.readyState !== WebSocket.OPEN; });
  });
  auto.checked = (function () { try { return localStorage.getItem(AUTO) !== "off"; } catch (e) { return true; } })();
  auto.addEventListener("change", function () {
    remember(AUTO, auto.checked ? "on" : "off");
    // Switched on: take what is on offer now, as a new offer would be.
    if (auto.checked && available.checked) {
      Object.keys(cards).forEach(function (id) { if (cards[id].dataset.status === "offered") claim(id); });
    }
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

  // A saved phone is reused, unless the link asks for another list's PIN: joining that one
  // then replaces it.
  var saved = null;
  try { saved = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { saved = null; }
  var wanted = new URLSearchParams(location.search).get("pin");
  if (saved && (!wanted || wanted === saved.pin)) start(saved);
  else if (saved) {
    phone = saved;  // not connected: joining the other list removes it first
    showJoin("Joining replaces this browser's phone in “" + saved.list_name + "”.", true);
  }
})();

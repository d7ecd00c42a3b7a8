// Panel behaviour: live fragments, the CODE dialog, copy buttons, confirmations, the send form.
(function () {
  "use strict";

  // Live parts: an element with data-live="<url>" is refreshed from the server every
  // data-every ms (default 2000). The server renders the HTML; we only swap it in.
  function refresh(el) {
    if (document.hidden) return;
    // Do not swap a form out from under someone typing in it.
    if (el.contains(document.activeElement) && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) return;
    fetch(el.dataset.live, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      // Redirected: the session ended and this is the sign-in page, not the fragment.
      .then(function (r) { return r.ok && !r.redirected ? r.text() : Promise.reject(r.status); })
      .then(function (html) { if (el.innerHTML !== html) el.innerHTML = html; })
      .catch(function () { /* next tick will try again */ });
  }
  var override = null;
  try { override = localStorage.getItem("phonefleet.live-every"); } catch (e) { /* private mode */ }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    setInterval(function () { refresh(el); }, parseInt(override || el.dataset.every || "2000", 10));
  });

  // Phone width: the menu opens and closes behind its button.
  var menuButton = document.getElementById("menu-button");
  if (menuButton) {
    menuButton.addEventListener("click", function () {
      var open = document.getElementById("sidebar").classList.toggle("open");
      menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // Copy buttons: data-copy="#id" copies that element's text.
  function copyText(text, button) {
    function done() { var old = button.textContent; button.textContent = "Copied"; setTimeout(function () { button.textContent = old; }, 1200); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      document.execCommand("copy"); area.remove(); done();
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var target = button.closest(".codebox, .secret, td, .card").querySelector(button.dataset.copy);
    if (target) copyText(target.textContent, button);
  });

  // Forms that do something irreversible ask first; a form marked data-once is sent once
  // (a double click must not send two SMS).
  document.addEventListener("submit", function (event) {
    var form = event.target, message = form.dataset.confirm;
    if (message && !window.confirm(message)) { event.preventDefault(); return; }
    if (form.dataset.once !== undefined) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }
  });

  // A button with data-inline-result sends its form to its formaction and shows the
  // server's sentence there, leaving the form as typed (the IPN page's test event).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-inline-result]");
    if (!button) return;
    event.preventDefault();
    var box = document.querySelector(button.dataset.inlineResult);
    button.disabled = true;
    box.className = "help";
    box.textContent = "Sending…";
    fetch(button.formAction, {
      method: "POST", body: new FormData(button.form), credentials: "same-origin", headers: { "X-Requested-With": "fetch" },
    })
      .then(function (r) { return r.ok && !r.redirected ? r.json() : Promise.reject(r.status); })
      .then(function (answer) { box.className = answer.ok ? "ok-text" : "field-error"; box.textContent = answer.message; })
      .catch(function () { box.className = "field-error"; box.textContent = "The server could not be reached; try again."; })
      .then(function () { button.disabled = false; });
  });

  // The send form's preview (parts, cost, phones online) is rendered by the server from
  // what is typed, with the accept path's own segment count: nothing is counted here.
  document.querySelectorAll("form[data-preview]").forEach(function (form) {
    var box = form.querySelector(".send-preview"), timer = null, asked = 0;
    function update() {
      var mine = ++asked;
      fetch(form.dataset.preview, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { if (mine === asked && box.innerHTML !== html) box.innerHTML = html; })
        .catch(function () { /* the next keystroke or tick tries again */ });
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
    form.addEventListener("change", update);
    // Phones come and go: the "online" line follows them while the form is open.
    setInterval(function () { if (!document.hidden) update(); }, 5000);
  });

  // Code examples: language tabs (remembered), and the CODE dialog that fetches them.
  function selectLanguage(root, lang) {
    if (!root.querySelector("[data-lang-tab='" + lang + "']")) lang = "curl";
    root.querySelectorAll("[data-lang-tab]").forEach(function (tab) {
      tab.setAttribute("aria-selected", tab.dataset.langTab === lang ? "true" : "false");
    });
    root.querySelectorAll("[data-lang-panel]").forEach(function (panel) {
      panel.hidden = panel.dataset.langPanel !== lang;
    });
  }
  function savedLanguage() {
    try { return localStorage.getItem("phonefleet.lang") || "curl"; } catch (e) { return "curl"; }
  }
  document.querySelectorAll(".code-examples").forEach(function (root) { selectLanguage(root, savedLanguage()); });
  var dialog = document.getElementById("code-dialog");
  document.addEventListener("click", function (event) {
    var tab = event.target.closest("[data-lang-tab]");
    if (tab) {
      selectLanguage(tab.closest(".code-examples"), tab.dataset.langTab);
      try { localStorage.setItem("phonefleet.lang", tab.dataset.langTab); } catch (e) { /* private mode */ }
      return;
    }
    if (!dialog) return;
    if (event.target.closest("[data-close]")) { dialog.close(); return; }
    var opener = event.target.closest("[data-code-url]");
    if (!opener) return;
    var body = dialog.querySelector(".dialog-body");
    dialog.querySelector(".dialog-title").textContent = opener.dataset.codeTitle || "Code";
    body.innerHTML = "<p class='muted'>Loading…</p>";
    dialog.showModal();
    fetch(opener.dataset.codeUrl, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        body.innerHTML = html;
        body.querySelectorAll(".code-examples").forEach(function (root) { selectLanguage(root, savedLanguage()); });
      });
  });
})();

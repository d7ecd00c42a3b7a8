// Panel behaviour: live fragments, the CODE dialog, copy buttons, confirmations.
(function () {
  "use strict";

  // Live parts: an element with data-live="<url>" is refreshed from the server every
  // data-every ms (default 2000). The server renders the HTML; we only swap it in.
  function refresh(el) {
    if (document.hidden) return;
    // Do not swap a form out from under someone typing in it.
    if (el.contains(document.activeElement) && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) return;
    fetch(el.dataset.live, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { if (el.innerHTML !== html) el.innerHTML = html; })
      .catch(function () { /* next tick will try again */ });
  }
  var override = null;
  try { override = localStorage.getItem("phonefleet.live-every"); } catch (e) { /* private mode */ }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    setInterval(function () { refresh(el); }, parseInt(override || el.dataset.every || "2000", 10));
  });

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

  // Forms that do something irreversible ask first.
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
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

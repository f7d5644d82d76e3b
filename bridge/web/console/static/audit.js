// Admin: the audit log, newest first, with the verification of its hash chain.
"use strict";

CB.start(function () {
  const $ = (name) => document.getElementById(name);
  const rows = $("entries");
  const more = $("more");
  let next = null;

  function row(entry) {
    return CB.el(
      "tr",
      { "data-entry": entry.id },
      CB.el("td", { "data-label": "#", text: String(entry.id) }),
      CB.el("td", { "data-label": "When" }, CB.el("time", { datetime: entry.at, text: CB.when(entry.at) })),
      CB.el("td", { "data-label": "Who", text: entry.actor }),
      CB.el("td", { "data-label": "Action", text: entry.action }),
      CB.el("td", { "data-label": "Subject", text: entry.subject || "" }),
      CB.el("td", { "data-label": "Detail", text: entry.detail === null || entry.detail === undefined ? "" : JSON.stringify(entry.detail) }),
    );
  }

  async function load(append) {
    const query = new URLSearchParams({ limit: "50" });
    const subject = $("subject").value.trim();
    if (subject) query.set("subject", subject);
    if (append && next) query.set("before", next);
    const page = await CB.api("GET", "/api/audit?" + query);
    next = page.next;
    more.hidden = !next;
    if (append) rows.append(...page.entries.map(row));
    else rows.replaceChildren(...page.entries.map(row));
  }

  async function verify() {
    const line = $("verify");
    try {
      const result = await CB.api("GET", "/api/audit/verify");
      line.className = "verify " + (result.ok ? "ok-text" : "error");
      line.textContent = result.ok
        ? "Verified: the hash chain of all " + result.count + " entries is intact."
        : "Broken: entry " + result.bad_id + " fails the hash chain (" + result.reason + "). Run carebridge audit verify.";
    } catch (err) {
      line.className = "verify error";
      line.textContent = "The audit log could not be verified: " + err.message;
    }
  }

  $("apply").addEventListener("click", () => load(false).catch((err) => CB.flash(err.message)));
  $("subject").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      load(false).catch((err) => CB.flash(err.message));
    }
  });
  more.addEventListener("click", () => load(true).catch((err) => CB.flash(err.message)));
  // Verified after the first page is read: that read is itself an audit entry the count includes.
  return load(false).then(verify);
});

// Admin: channel health, the /healthz document as a page.
"use strict";

CB.start(function () {
  const $ = (name) => document.getElementById(name);

  function badge(state) {
    return CB.el("span", { class: state === "connected" || state === "ok" ? "state-connected" : "state-bad", text: state });
  }

  function describe(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "object") return String(value);
    return Object.entries(value).map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
  }

  async function load() {
    const response = await fetch("/healthz", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.status === 401 || response.status === 404) {
      $("overall").textContent =
        "The health data is kept for operators here ([server] admin_listen or admin_token): read /healthz there.";
      return;
    }
    const health = await response.json();
    $("overall").replaceChildren("Carebridge " + health.version + ": ", badge(health.status));
    $("channels").replaceChildren(
      ...Object.entries(health.channels).map(([name, channel]) =>
        CB.el("tr", { "data-channel": name },
          CB.el("td", { "data-label": "Channel" }, CB.label(name)),
          CB.el("td", { "data-label": "State" }, badge(channel.state)),
          CB.el("td", { "data-label": "Reason", text: channel.reason || "" })),
      ),
    );
    const parts = $("parts");
    parts.replaceChildren();
    for (const [name, value] of [["Store", health.store], ["Outbox", health.outbox], ["Scheduler", health.scheduler]]) {
      parts.append(CB.el("dt", { text: name }), CB.el("dd", { text: describe(value) }));
    }
    $("plugins").replaceChildren(
      ...Object.entries(health.plugins).map(([name, plugin]) =>
        CB.el("tr", {},
          CB.el("td", { "data-label": "Plugin", text: name }),
          CB.el("td", { "data-label": "Version", text: plugin.version || "" }),
          CB.el("td", { "data-label": "Channels", text: (plugin.channels || []).join(", ") }),
          CB.el("td", { "data-label": "Error", class: plugin.error ? "error" : "", text: plugin.error || "" })),
      ),
    );
  }

  $("refresh").addEventListener("click", () => load().catch((err) => CB.flash(err.message)));
  return load();
});

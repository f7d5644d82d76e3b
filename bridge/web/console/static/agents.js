// Admin: the agents (add with the authenticator QR code shown once, disable, change channel, queues, capacity).
"use strict";

CB.start(function () {
  const $ = (name) => document.getElementById(name);
  const rows = $("agents");

  function cell(label, ...content) {
    return CB.el("td", { "data-label": label }, ...content);
  }

  function editForm(agent) {
    const prefix = "edit-" + agent.name;
    const channel = CB.el("input", { id: prefix + "-channel", name: "channel", placeholder: "console or CHANNEL:ADDRESS", autocapitalize: "none", spellcheck: "false" });
    const queues = CB.el("input", { id: prefix + "-queues", name: "queues", value: agent.queues.join(", ") });
    const capacity = CB.el("input", { id: prefix + "-capacity", name: "capacity", type: "number", min: "1", max: "1000", value: agent.capacity });
    const form = CB.el(
      "form",
      { class: "edit" },
      CB.el("label", { for: channel.id, text: "New channel of " + agent.name }), channel,
      CB.el("label", { for: queues.id, text: "Queues of " + agent.name }), queues,
      CB.el("label", { for: capacity.id, text: "Capacity of " + agent.name }), capacity,
      CB.el("button", { type: "submit", text: "Save" }),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const change = {};
      if (channel.value.trim()) change.channel = channel.value.trim();
      const wanted = queues.value.split(",").map((q) => q.trim()).filter(Boolean);
      if (wanted.join(",") !== agent.queues.join(",")) change.queues = wanted;
      if (Number(capacity.value) !== agent.capacity) change.capacity = Number(capacity.value);
      if (Object.keys(change).length === 0) return;
      const answer = await CB.busy(event.submitter, () => CB.api("PATCH", "/api/agents/" + encodeURIComponent(agent.name), change));
      if (!answer) return;
      CB.flash(agent.name + " was changed.", true);
      await load();
    });
    return CB.el("details", {}, CB.el("summary", { text: "Change", "aria-label": "Change " + agent.name }), form);
  }

  function row(agent) {
    const disable = CB.el("button", { type: "button", class: "danger", text: "Disable" });
    disable.setAttribute("aria-label", "Disable " + agent.name);
    disable.addEventListener("click", async () => {
      if (!window.confirm("Disable " + agent.name + "? Their sessions end and their conversations go to colleagues.")) return;
      const answer = await CB.busy(disable, () => CB.api("PATCH", "/api/agents/" + encodeURIComponent(agent.name), { disabled: true }));
      if (!answer) return;
      CB.flash(agent.name + " is disabled.", true);
      await load();
    });
    const state = agent.disabled ? "disabled" : agent.online ? "online" : "offline";
    return CB.el(
      "tr",
      { "data-agent": agent.name },
      cell("Name", agent.name),
      cell("Role", agent.role),
      cell("Channel", agent.address || agent.channel),
      cell("Queues", agent.queues.length ? agent.queues.join(", ") : "default"),
      cell("Capacity", String(agent.capacity)),
      cell("State", state),
      cell("Actions", agent.disabled ? "" : CB.el("div", { class: "cell-actions" }, editForm(agent), agent.name === CB.me.name ? null : disable)),
    );
  }

  async function load() {
    const answer = await CB.api("GET", "/api/agents");
    rows.replaceChildren(...answer.agents.map(row));
  }

  // segno's inline SVG from the server, parsed in an inert document (nothing in it runs) and moved into
  // the page; anything but drawing (scripts, event attributes, links) is dropped on the way.
  function showQr(svgText) {
    const parsed = new DOMParser().parseFromString(svgText, "text/html");
    const svg = parsed.querySelector("svg");
    const box = $("qr");
    if (!svg) {
      box.replaceChildren(CB.el("p", { class: "error", text: "The QR code could not be shown; use the address below." }));
      return;
    }
    for (const node of svg.querySelectorAll("script, foreignObject, a")) node.remove();
    for (const node of [svg, ...svg.querySelectorAll("*")]) {
      for (const attribute of [...node.attributes]) {
        if (attribute.name.startsWith("on") || attribute.name.includes("href")) node.removeAttribute(attribute.name);
      }
    }
    box.replaceChildren(document.importNode(svg, true));
  }

  $("add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const payload = {
      name: form.name.value.trim(),
      channel: form.channel.value.trim(),
      role: form.role.value,
      capacity: Number(form.capacity.value),
      password: form.password.value,
    };
    if (form.email.value.trim()) payload.email = form.email.value.trim();
    const queues = form.queues.value.split(",").map((q) => q.trim()).filter(Boolean);
    if (queues.length) payload.queues = queues;
    const answer = await CB.busy(event.submitter, () => CB.api("POST", "/api/agents", payload));
    if (!answer) return;
    form.reset();
    CB.flash(answer.agent.name + " was added. Let them scan the code below now; it is shown only once.", true);
    $("enrolled-name").textContent = answer.agent.name;
    showQr(answer.totp_qr_svg);
    $("otpauth").value = answer.otpauth_uri;
    $("enrolled").hidden = false;
    $("enrolled").focus();
    await load();
  });

  $("enrolled-done").addEventListener("click", () => {
    $("qr").replaceChildren();
    $("otpauth").value = "";
    $("enrolled").hidden = true;
  });

  return load();
});

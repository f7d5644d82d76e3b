// The inbox: my open conversations and the waiting ones of my queues, live, with unread counts,
// channel and the platform's reply window as a countdown.
"use strict";

CB.start(function () {
  const list = document.getElementById("conversations");
  const filter = document.getElementById("filter");
  const more = document.getElementById("more");
  const empty = document.getElementById("empty");
  const liveStatus = document.getElementById("live");
  let shown = [];
  let next = null;
  let reloadTimer = null;

  filter.value = sessionStorage.getItem("cb.inbox.filter") || "open";

  async function page(status, before) {
    const query = new URLSearchParams({ status, limit: "100" });
    if (before) query.set("before", before);
    return CB.api("GET", "/api/conversations?" + query);
  }

  async function load(append) {
    const choice = filter.value;
    let rows = [];
    if (choice === "open") {
      const [assigned, queued] = await Promise.all([page("assigned"), page("queued")]);
      rows = assigned.conversations.filter((c) => c.agent === CB.me.name).concat(queued.conversations);
      next = null;
    } else {
      const answer = await page(choice, append ? next : null);
      rows = answer.conversations;
      next = answer.next;
    }
    shown = append ? shown.concat(rows) : rows;
    render();
  }

  // The reply window's countdown; ``tick`` updates the text every second without redrawing the list.
  function countdown(conversation) {
    if (conversation.status === "closed" || CB.windowLeft(conversation) === null) return null;
    const span = CB.el("span", { class: "countdown", "data-window-for": conversation.id });
    paint(span, conversation);
    return span;
  }

  function paint(span, conversation) {
    const left = CB.windowLeft(conversation);
    const open = left !== null && left > 0;
    span.classList.toggle("closed", !open);
    span.dataset.window = open ? "open" : "closed";
    span.textContent = open ? "Reply window: " + CB.duration(left) : "Reply window closed";
  }

  function tick() {
    for (const span of list.querySelectorAll("[data-window-for]")) {
      const conversation = shown.find((c) => String(c.id) === span.dataset.windowFor);
      if (conversation) paint(span, conversation);
    }
  }

  function item(conversation) {
    const unread = CB.unread(conversation);
    const name = conversation.contact_name || "Customer " + conversation.id;
    const state =
      conversation.status === "queued"
        ? "waiting in " + conversation.queue
        : conversation.status === "assigned"
          ? "with " + (conversation.agent === CB.me.name ? "you" : conversation.agent)
          : "closed";
    const link = CB.el(
      "a",
      { href: "/conversations/" + conversation.id, "data-conversation": conversation.id },
      CB.el("span", { class: "who-line", text: "#" + conversation.id + " " + name }),
      CB.el(
        "span",
        { class: "meta" },
        CB.el("span", { class: "channel", text: CB.label(conversation.channel) }),
        " · ",
        CB.el("span", { class: conversation.status === "queued" ? "status-queued" : "", text: state }),
        " · ",
        CB.el("time", { datetime: conversation.updated_at, text: CB.when(conversation.updated_at) }),
      ),
      CB.el(
        "span",
        { class: "side" },
        unread > 0 ? CB.el("span", { class: "badge", "aria-label": unread + " unread", text: String(unread) }) : null,
        countdown(conversation),
      ),
    );
    return CB.el("li", {}, link);
  }

  function render() {
    // A live update must not take the keyboard focus away from the conversation it was on.
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.conversation : null;
    list.replaceChildren(...shown.map(item));
    if (focused) {
      const again = list.querySelector('[data-conversation="' + focused + '"]');
      if (again) again.focus();
    }
    empty.hidden = shown.length > 0;
    more.hidden = !next;
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load(false).catch((err) => CB.flash(err.message)), 250);
  }

  filter.addEventListener("change", () => {
    sessionStorage.setItem("cb.inbox.filter", filter.value);
    load(false).catch((err) => CB.flash(err.message));
  });
  more.addEventListener("click", () => load(true).catch((err) => CB.flash(err.message)));

  CB.live(
    {
      message(data) {
        if (data.message && data.message.direction === "in") CB.countUnread(data.conversation_id, data.message.id);
      },
      any: reloadSoon,
    },
    liveStatus,
  );
  setInterval(tick, 1000);
  return load(false);
});

// One conversation: the transcript (newest at the bottom, older pages on scroll), the reply box,
// notes, transfer, close, /secure, and sensitive values masked until "Reveal" (each reveal audited).
"use strict";

CB.start(function () {
  const id = Number(document.body.dataset.conversation);
  const base = "/api/conversations/" + id;
  const $ = (name) => document.getElementById(name);
  const transcript = $("transcript");
  const olderButton = $("older");
  const replyForm = $("reply-form");
  const reply = $("reply");
  const windowLine = $("window");
  const seen = new Set();
  let conversation = null;
  let older = null;
  let loadingOlder = false;

  async function loadConversation() {
    conversation = (await CB.api("GET", base)).conversation;
    const name = conversation.contact_name || "Customer " + id;
    const state =
      conversation.status === "queued"
        ? "waiting in queue " + conversation.queue
        : conversation.status === "assigned"
          ? "with " + (conversation.agent === CB.me.name ? "you" : conversation.agent)
          : "closed";
    $("summary").textContent = name + " · " + CB.label(conversation.channel) + " · " + state;
    const mine = conversation.status === "assigned" && conversation.agent === CB.me.name;
    $("take").hidden = conversation.status !== "queued";
    $("close").hidden = !mine;
    replyForm.hidden = !mine;
    for (const panel of ["note-panel", "transfer-panel", "secure-panel"]) $(panel).hidden = !mine;
    paintWindow();
  }

  function paintWindow() {
    const left = conversation && conversation.status !== "closed" ? CB.windowLeft(conversation) : null;
    windowLine.hidden = left === null;
    if (left !== null) {
      windowLine.textContent =
        left > 0
          ? "Reply window: " + CB.duration(left) + " left"
          : "Reply window closed: the customer must write first (or the platform's template is sent).";
    }
  }

  function who(message) {
    if (message.direction === "in") return (conversation && conversation.contact_name) || "Customer";
    if (message.direction === "out") return message.agent || "Agent";
    if (message.direction === "note") return "Note by " + (message.agent || "an agent");
    return "Carebridge";
  }

  function bubble(message) {
    const text = CB.el("p", { text: message.text === null ? "(this message could not be read)" : message.text });
    const meta = CB.el(
      "span",
      { class: "meta" },
      who(message) + " · ",
      CB.el("time", { datetime: message.created_at, text: CB.when(message.created_at) }),
    );
    const item = CB.el("li", { class: "msg " + message.direction, "data-id": message.id }, text, meta);
    if (message.sensitive) {
      const reveal = CB.el("button", { type: "button", class: "secondary reveal", text: "Reveal" });
      reveal.setAttribute("aria-label", "Reveal the sensitive values of this message");
      reveal.addEventListener("click", () => revealOne(message.id, text, reveal));
      meta.append(" · sensitive ", reveal);
    }
    return item;
  }

  // Ask for one message unmasked (the API writes a conversation.reveal audit entry).
  async function revealOne(messageId, text, button) {
    const page = await CB.busy(button, () =>
      CB.api("GET", base + "/messages?" + new URLSearchParams({ before: String(messageId + 1), limit: "1", reveal: "1" })),
    );
    const message = page && page.messages.find((m) => m.id === messageId);
    if (!message) return;
    text.textContent = message.text;
    button.replaceWith(CB.el("span", { class: "revealed", text: "revealed" }));
  }

  function add(messages, where) {
    const fresh = messages.filter((m) => !seen.has(m.id));
    for (const message of fresh) {
      seen.add(message.id);
      if (message.direction === "in") CB.sawInbound(id, message.created_at);
    }
    const items = fresh.map(bubble);
    if (where === "top") transcript.prepend(...items);
    else transcript.append(...items);
    const newest = Math.max(0, ...seen);
    CB.markRead(id, newest);
    return items.length;
  }

  async function loadPage(before) {
    const query = new URLSearchParams({ limit: "50" });
    if (before) query.set("before", before);
    const page = await CB.api("GET", base + "/messages?" + query);
    older = page.next;
    olderButton.hidden = !older;
    return page.messages;
  }

  async function loadOlder() {
    if (!older || loadingOlder) return;
    loadingOlder = true;
    const height = transcript.scrollHeight;
    try {
      add(await loadPage(older), "top");
      transcript.scrollTop += transcript.scrollHeight - height; // keep the reader's place
    } catch (err) {
      CB.flash(err.message);
    } finally {
      loadingOlder = false;
    }
  }

  function toBottom() {
    transcript.scrollTop = transcript.scrollHeight;
  }

  olderButton.addEventListener("click", loadOlder);
  transcript.addEventListener("scroll", () => {
    if (transcript.scrollTop < 40) loadOlder();
  });

  CB.enterSends(reply, replyForm);
  replyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reply.value.trim();
    if (!text) return;
    const answer = await CB.busy($("send"), () => CB.api("POST", base + "/messages", { text }));
    if (!answer) return;
    reply.value = "";
    CB.flash("");
    add([answer.message]);
    toBottom();
    reply.focus();
  });

  $("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = $("note");
    const answer = await CB.busy(event.submitter, () => CB.api("POST", base + "/notes", { text: note.value }));
    if (!answer) return;
    note.value = "";
    add([answer.message]);
    toBottom();
    CB.flash("Note added.", true);
  });

  $("transfer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = $("transfer-to").value.trim();
    const note = $("transfer-note").value;
    const answer = await CB.busy(event.submitter, () => CB.api("POST", base + "/transfer", { to, note }));
    if (!answer) return;
    const target = answer.to && answer.to.agent ? answer.to.agent : "queue " + ((answer.to && answer.to.queue) || to);
    CB.flashNext("Conversation #" + id + " was transferred to " + target + ".");
    location.assign("/");
  });

  $("secure-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const secure = $("secure");
    const answer = await CB.busy(event.submitter, () => CB.api("POST", base + "/secure", { text: secure.value }));
    if (!answer) return;
    secure.value = "";
    CB.flash(answer.result || "Sent by email.", true);
  });

  $("close").addEventListener("click", async (event) => {
    if (!window.confirm("Close conversation #" + id + "? The customer is told it was closed.")) return;
    const answer = await CB.busy(event.currentTarget, () => CB.api("POST", base + "/close", {}));
    if (!answer) return;
    await loadConversation();
    CB.flash("Conversation closed.", true);
  });

  $("take").addEventListener("click", async (event) => {
    const answer = await CB.busy(event.currentTarget, () => CB.api("POST", base + "/take", {}));
    if (!answer) return;
    await loadConversation();
    CB.flash("The conversation is yours now.", true);
    reply.focus();
  });

  CB.live(
    {
      message(data) {
        if (data.conversation_id !== id) return;
        const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 60;
        add([data.message]);
        if (atBottom) toBottom();
        paintWindow();
      },
      any(name, data) {
        if (name !== "message" && data.conversation_id === id) loadConversation().catch((err) => CB.flash(err.message));
      },
    },
    null,
  );
  setInterval(paintWindow, 1000);

  return (async () => {
    await loadConversation();
    add(await loadPage(null));
    toBottom();
    if (!replyForm.hidden) reply.focus();
  })().catch((err) => CB.flash(err.status === 404 ? "There is no conversation #" + id + "." : err.message));
});

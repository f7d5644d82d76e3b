// The customer chat page: a token kept in localStorage, messages up by POST, down by Server-Sent Events.
"use strict";

(function () {
  const BASE = "/webhooks/webchat";
  const KEY = "carebridge.webchat";
  const $ = (id) => document.getElementById(id);
  const root = $("chat");
  const transcript = $("transcript");
  const text = $("text");
  const send = $("send");
  const maxText = Number(root.dataset.maxText) || 2000;
  const seen = new Set();
  let chat = load();
  let source = null;

  if (new URLSearchParams(location.search).has("embed")) document.documentElement.classList.add("embed");
  text.maxLength = maxText;

  function load() {
    try {
      const value = JSON.parse(localStorage.getItem(KEY) || "null");
      return value && typeof value.token === "string" ? value : null;
    } catch (err) {
      return null;
    }
  }

  function save(value) {
    try {
      if (value) localStorage.setItem(KEY, JSON.stringify(value));
      else localStorage.removeItem(KEY);
    } catch (err) {
      // Storage refused (private mode): the chat lasts as long as the page.
    }
  }

  function status(message, isError) {
    const line = $("status");
    line.textContent = message || "";
    line.classList.toggle("error", Boolean(isError));
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (chat) headers.Authorization = "Bearer " + chat.token;
    const response = await fetch(BASE + path, { method: "POST", headers, body: JSON.stringify(body) });
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = {};
    }
    if (!response.ok) {
      const error = new Error((data.error && data.error.message) || "The chat is not available (HTTP " + response.status + ").");
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function started() {
    $("start").hidden = true;
    $("forget").hidden = false;
  }

  function connect() {
    if (source) source.close();
    source = new EventSource(BASE + "/events?token=" + encodeURIComponent(chat.token));
    source.addEventListener("message", (event) => show(JSON.parse(event.data)));
    source.addEventListener("open", () => status(""));
    source.addEventListener("error", () => status("Connection lost, reconnecting…"));
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function bubble(direction, body, when) {
    const item = document.createElement("li");
    item.className = "msg " + direction;
    const p = document.createElement("p");
    p.textContent = body;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = (direction === "in" ? "You" : direction === "system" ? "Notice" : "Agent") + (when ? " · " + clock(when) : "");
    item.append(p, meta);
    return item;
  }

  function show(message) {
    if (seen.has(message.id)) return;
    seen.add(message.id);
    if (message.direction === "in") {
      const pending = Array.from(transcript.querySelectorAll(".pending")).find((li) => li.dataset.text === message.text);
      if (pending) pending.remove();
    }
    const item = bubble(message.direction, message.text, message.created_at);
    item.dataset.id = String(message.id);
    transcript.append(item);
    item.scrollIntoView({ block: "end" });
    started();
  }

  async function submit() {
    const body = text.value.trim();
    if (!body) return;
    if (body.length > maxText) {
      status("A message may have at most " + maxText + " characters.", true);
      return;
    }
    send.disabled = true;
    const pending = bubble("in", body, 0);
    pending.classList.add("pending");
    pending.dataset.text = body;
    try {
      if (!chat) {
        const created = await post("/session", { name: $("name").value.trim(), email: $("email").value.trim() });
        chat = { token: created.token, address: created.address };
        save(chat);
        started();
        connect();
      }
      transcript.append(pending);
      pending.scrollIntoView({ block: "end" });
      await post("/messages", { text: body });
      text.value = "";
      status("");
    } catch (err) {
      pending.remove();
      status(err.message, true);
    } finally {
      send.disabled = false;
      text.focus();
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  $("forget").addEventListener("click", () => {
    if (source) source.close();
    source = null;
    chat = null;
    save(null);
    seen.clear();
    transcript.replaceChildren();
    $("start").hidden = false;
    $("forget").hidden = true;
    status("This browser no longer keeps the previous chat.");
  });

  if (chat) {
    started();
    connect();
  }
})();

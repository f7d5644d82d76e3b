// What every console page shares: the API client (session cookie + CSRF header), the header,
// live events, small DOM helpers, reply windows and unread counts. Plain JavaScript, no build step.
"use strict";

window.CB = (function () {
  const body = document.body;
  const channels = JSON.parse(body.dataset.channels || "{}");
  let me = null;

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  // One API call: JSON in and out; a 401 sends the browser to the login page (unless told not to).
  async function api(method, path, payload, options) {
    const headers = { Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const failure = new ApiError(
        response.status,
        error.code || "http_" + response.status,
        error.message || "The server answered " + response.status + ".",
        Number(response.headers.get("Retry-After")) || 0,
      );
      if (response.status === 401 && !(options && options.anonymous)) toLogin();
      throw failure;
    }
    return data;
  }

  function toLogin() {
    const next = location.pathname + location.search;
    location.assign("/login" + (next && next !== "/" ? "?next=" + encodeURIComponent(next) : ""));
  }

  // Who is logged in; fills the header. Every page but the login page starts here.
  async function session() {
    me = await api("GET", "/api/me");
    const name = document.getElementById("me-name");
    if (name) name.textContent = me.name + (me.role === "admin" ? " (admin)" : "");
    for (const item of document.querySelectorAll(".admin-only")) item.hidden = me.role !== "admin";
    return me;
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function flash(message, ok) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message || "";
    box.classList.toggle("ok", Boolean(ok));
    box.hidden = !message;
  }

  // A message for the next page (after a redirect).
  function flashNext(message) {
    sessionStorage.setItem("cb.flash", message);
  }

  function label(channel) {
    return (channels[channel] && channels[channel].label) || channel;
  }

  function seconds(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "number") return value;
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed / 1000;
  }

  function when(value) {
    const at = seconds(value);
    if (at === null) return "";
    const date = new Date(at * 1000);
    const today = new Date();
    const sameDay = date.toDateString() === today.toDateString();
    return sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  function duration(total) {
    const s = Math.max(0, Math.floor(total));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h > 0) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m > 0) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return s + " s";
  }

  // --- what the browser remembers per conversation (unread counts, the customer's last message) ----

  function stored(key) {
    try {
      return JSON.parse(localStorage.getItem(key) || "null");
    } catch (err) {
      return null;
    }
  }

  function store(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      // Storage refused: counts last as long as the page.
    }
  }

  function owner() {
    return me ? me.name : "";
  }

  // The customer's latest message time, for the reply window (the API's value wins when it has one).
  function lastInbound(conversation) {
    const server = seconds(conversation.last_inbound_at);
    const local = stored("cb.lastin." + conversation.id);
    return Math.max(server || 0, local || 0) || null;
  }

  function sawInbound(conversationId, createdAt) {
    const at = seconds(createdAt);
    if (at !== null && at > (stored("cb.lastin." + conversationId) || 0)) store("cb.lastin." + conversationId, at);
  }

  // Seconds left in the platform's reply window, or null where the platform has none (or it is unknown).
  function windowLeft(conversation) {
    const info = channels[conversation.channel];
    const last = lastInbound(conversation);
    if (!info || !info.reply_window || !last) return null;
    return last + info.reply_window - Date.now() / 1000;
  }

  function unread(conversation) {
    if (typeof conversation.unread === "number") return conversation.unread;
    const entry = stored("cb.unread." + owner() + "." + conversation.id);
    return entry ? entry.count : 0;
  }

  function countUnread(conversationId, messageId) {
    const key = "cb.unread." + owner() + "." + conversationId;
    const entry = stored(key) || { count: 0, last: 0 };
    if (messageId <= entry.last) return;
    store(key, { count: entry.count + 1, last: messageId });
  }

  function markRead(conversationId, messageId) {
    const key = "cb.unread." + owner() + "." + conversationId;
    const entry = stored(key) || { count: 0, last: 0 };
    store(key, { count: 0, last: Math.max(entry.last, messageId || 0) });
  }

  // --- live events -----------------------------------------------------------------------------

  function live(handlers, statusElement) {
    const source = new EventSource("/api/events");
    const status = (text) => {
      if (statusElement) statusElement.textContent = text;
    };
    source.addEventListener("open", () => status("Live"));
    source.addEventListener("error", async () => {
      status("Reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        try {
          await api("GET", "/api/me");
        } catch (err) {
          return; // a 401 went to the login page
        }
        setTimeout(() => live(handlers, statusElement), 3000);
      }
    });
    for (const name of ["message", "assigned", "transferred", "closed"]) {
      source.addEventListener(name, (event) => {
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (name === "message" && data.message && data.message.direction === "in") {
          sawInbound(data.conversation_id, data.message.created_at);
        }
        if (handlers[name]) handlers[name](data);
        if (handlers.any) handlers.any(name, data);
      });
    }
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  // Enter sends, Shift+Enter starts a new line (IME composition is left alone).
  function enterSends(textarea, form) {
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  // Run an async form action with its submit button disabled; errors go to the flash line.
  async function busy(button, action) {
    if (button) button.disabled = true;
    try {
      return await action();
    } catch (err) {
      flash(err.message);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  function start(main) {
    const current = body.dataset.page;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === current) link.setAttribute("aria-current", "page");
    }
    const message = sessionStorage.getItem("cb.flash");
    if (message) {
      sessionStorage.removeItem("cb.flash");
      flash(message, true);
    }
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        try {
          await api("POST", "/api/logout", {});
        } finally {
          location.assign("/login");
        }
      });
    }
    session()
      .then(() => main())
      .catch((err) => {
        if (err.status !== 401) flash(err.message);
      });
  }

  return {
    ApiError, api, session, el, flash, flashNext, label, when, duration, seconds, windowLeft, sawInbound,
    unread, countUnread, markRead, live, enterSends, busy, start, channels,
    get me() {
      return me;
    },
  };
})();

// The login page: username, password and the authenticator's code, every time.
"use strict";

(function () {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const submit = document.getElementById("login-submit");
  let lockTimer = null;

  function target() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    return next.startsWith("/") && !next.startsWith("//") ? next : "/";
  }

  function show(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  // A locked account or address: say so, with the time that remains, and keep the button off until then.
  function locked(seconds) {
    clearInterval(lockTimer);
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(lockTimer);
        submit.disabled = false;
        show("You may try again now.");
        return;
      }
      submit.disabled = true;
      show("Too many failed logins. Locked: try again in " + CB.duration(left) + ".");
    };
    tick();
    lockTimer = setInterval(tick, 1000);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    const totp = form.totp.value.replace(/\s+/g, "");
    if (!username || !password || !totp) {
      show("Enter your username, your password and the code of your authenticator app.");
      (!username ? form.username : !password ? form.password : form.totp).focus();
      return;
    }
    submit.disabled = true;
    show("");
    try {
      await CB.api("POST", "/api/login", { username, password, totp }, { anonymous: true });
      location.assign(target());
      return;
    } catch (err) {
      form.totp.value = "";
      if (err.status === 429) {
        locked(err.retryAfter || 60);
        return;
      }
      if (err.status === 401) show("Wrong username, password or code. Codes change every 30 seconds.");
      else show(err.message);
      form.totp.focus();
    }
    submit.disabled = false;
  });

  // Already logged in (another tab): go on.
  CB.api("GET", "/api/me", undefined, { anonymous: true }).then(() => location.assign(target()), () => {});
  form.username.focus();
})();

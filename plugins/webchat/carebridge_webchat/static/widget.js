// The website chat widget for the company's own site:
//   <script src="https://care.example.org/webhooks/webchat/widget.js" defer></script>
// It adds a "Chat with us" button that opens the bridge's /chat page in a frame. The site's
// origin must be listed in [channels.webchat] allowed_origins, or the browser refuses the frame.
// Optional attributes on the script tag: data-label="…" (the button's text).
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var origin = new URL(script.src, location.href).origin;
  var label = script.getAttribute("data-label") || "Chat with us";

  function style(element, rules) {
    for (var name in rules) element.style[name] = rules[name];
  }

  function mount() {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("data-carebridge-webchat", "button");
    style(button, {
      position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483646",
      padding: "12px 18px", border: "0", borderRadius: "24px", background: "#1f5fbf", color: "#ffffff",
      font: "600 15px/1.2 system-ui, sans-serif", cursor: "pointer", boxShadow: "0 2px 8px rgba(0,0,0,0.25)"
    });
    var frame = null;
    button.addEventListener("click", function () {
      if (!frame) {
        frame = document.createElement("iframe");
        frame.src = origin + "/chat?embed=1";
        frame.title = label;
        frame.setAttribute("data-carebridge-webchat", "frame");
        style(frame, {
          position: "fixed", right: "16px", bottom: "72px", zIndex: "2147483647",
          width: "min(380px, calc(100vw - 32px))", height: "min(560px, calc(100vh - 96px))",
          border: "1px solid #d5dbe3", borderRadius: "12px", background: "#ffffff",
          boxShadow: "0 4px 16px rgba(0,0,0,0.25)"
        });
        document.body.appendChild(frame);
      } else {
        frame.hidden = !frame.hidden;
      }
      button.setAttribute("aria-expanded", String(!frame.hidden));
    });
    document.body.appendChild(button);
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();

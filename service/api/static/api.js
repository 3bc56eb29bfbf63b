// The pages' one way to call the JSON API: adds the signed-in API token, reports 401s, and
// runs pollers that pause while the tab is hidden. The token's cookie opens the pages only; the
// API takes it as a Bearer token, which the sign-in form leaves in localStorage for this script.
"use strict";

const trainq = (() => {
  const TOKEN_KEY = "trainq.apiToken";
  const notice = document.getElementById("api-notice");

  function token() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || "";
    } catch (_error) {
      return "";
    }
  }

  function say(message) {
    if (!notice) return;
    notice.textContent = message;
    notice.hidden = !message;
  }

  async function fetchJson(path, options = {}) {
    const headers = new Headers(options.headers || {});
    headers.set("Accept", "application/json");
    const saved = token();
    if (saved) headers.set("Authorization", "Bearer " + saved);
    const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
    if (response.status === 401) {
      say("The API refused this browser's token: sign out and sign in again.");
      throw new Error("unauthorized");
    }
    const body = await response.json();
    if (!response.ok) {
      const message = (body && body.error && body.error.message) || response.statusText;
      throw new Error(message);
    }
    say("");
    return body;
  }

  // Calls `step` now and every `ms` while the page is visible; `step` returns false to stop.
  // One call at a time: a tab shown again while a call is in flight does not start a second.
  function poll(step, ms) {
    let timer = null;
    let busy = false;
    let stopped = false;
    function schedule() {
      if (!stopped && !busy && !document.hidden && timer === null) {
        timer = window.setTimeout(tick, ms);
      }
    }
    async function tick() {
      timer = null;
      if (stopped || busy || document.hidden) return;
      busy = true;
      let again = true;
      try {
        again = (await step()) !== false;
      } catch (error) {
        if (error.message !== "unauthorized") say("Live update failed: " + error.message);
      } finally {
        busy = false;
      }
      if (!again) stopped = true;
      schedule();
    }
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        window.clearTimeout(timer);
        timer = null;
      } else if (!busy && timer === null) {
        tick();
      }
    });
    tick();
  }

  // Four significant digits, written as Python's "%.4g" writes them (the server's filter).
  function formatLoss(value) {
    if (value === null || value === undefined) return "-";
    const x = Number(value);
    const size = Math.abs(x);
    const text = x !== 0 && (size < 1e-4 || size >= 1e4) ? x.toExponential(3) : x.toPrecision(4);
    return text.replace(/(\.\d*?)0+(?=e|$)/, "$1").replace(/\.(?=e|$)/, "");
  }

  function formatWhen(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "-";
  }

  // Sign-in: the form posts the token (the server sets the pages' cookie); keep it for the API.
  const signIn = document.getElementById("sign-in-form");
  if (signIn) {
    signIn.addEventListener("submit", () => {
      try {
        window.localStorage.setItem(TOKEN_KEY, document.getElementById("sign-in-token").value.trim());
      } catch (_error) {
        // Without storage the pages still load; their live updates will say the API refused.
      }
    });
  }
  const signOut = document.getElementById("sign-out-form");
  if (signOut) {
    signOut.addEventListener("submit", () => {
      try {
        window.localStorage.removeItem(TOKEN_KEY);
      } catch (_error) {
        // Nothing stored, nothing to forget.
      }
    });
  }

  return { fetchJson, poll, formatLoss, formatWhen, say };
})();

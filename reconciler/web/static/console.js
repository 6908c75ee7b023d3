// Grove console: live refresh of a page's live region, and keyboard shortcuts.
// Every page works without this script; it only keeps an open page current.
(() => {
  "use strict";
  const live = document.getElementById("live");
  const freshness = document.getElementById("freshness");
  let updated = Date.now();
  let connected = false;
  let polling = null;
  let leaving = false; // a form was sent: the page is going away, do not fetch for it
  document.addEventListener("submit", () => { leaving = true; });
  window.addEventListener("pageshow", () => { leaving = false; });

  const say = () => {
    if (!freshness) return;
    const seconds = Math.round((Date.now() - updated) / 1000);
    freshness.textContent = connected
      ? "Live: updates appear as they happen"
      : "Updated " + (seconds < 2 ? "just now" : seconds + " s ago") + " (checking every 30 s)";
  };

  const refresh = async () => {
    if (leaving) return;
    if (!live) { updated = Date.now(); say(); return; }
    if (live.contains(document.activeElement) && document.activeElement !== document.body) {
      return; // never pull the region from under the keyboard: the next event refreshes it
    }
    try {
      const answer = await fetch(location.href, {
        headers: { "X-Grove-Fragment": "live" }, credentials: "same-origin", redirect: "manual",
      });
      if (answer.type === "opaqueredirect" || answer.status === 401) { location.reload(); return; }
      if (!answer.ok) return;
      live.innerHTML = await answer.text();
      updated = Date.now();
      say();
    } catch (error) {
      // the server is away: the freshness line says how old the page is
    }
  };

  const poll = () => {
    if (polling === null) polling = setInterval(refresh, 30000);
  };

  if (document.body.dataset.live === "on" && "EventSource" in window) {
    const stream = new EventSource("/console/events");
    stream.addEventListener("open", () => { connected = true; updated = Date.now(); say(); });
    stream.addEventListener("refresh", refresh);
    stream.addEventListener("signed-out", () => { stream.close(); location.reload(); });
    stream.addEventListener("error", () => {
      connected = false;
      say();
      if (stream.readyState === EventSource.CLOSED) poll();
    });
    setInterval(say, 5000);
    window.addEventListener("pagehide", () => stream.close());
  } else if (document.body.dataset.live === "on") {
    poll();
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      const search = document.querySelector("input[type=search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    }
  });
})();

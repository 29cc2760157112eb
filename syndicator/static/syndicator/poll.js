// The feed page after "Poll now": ask for the feed's last poll until one newer than the queued
// moment arrives, then show its result (the button returns at once; a worker polls).
(function () {
  "use strict";
  const box = document.getElementById("poll-result");
  if (!box) return;
  const since = box.dataset.since;
  const started = Date.now();
  const NO_WORKER_AFTER_MS = 60000; // a poll not taken by then: is the worker running at all?

  function show(state, text) {
    box.dataset.state = state;
    box.textContent = text;
  }

  async function check() {
    let answer;
    try {
      const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
      answer = await response.json();
    } catch (error) {
      show("waiting", "Poll queued; the page could not ask for its result (" + error + "), retrying…");
      return setTimeout(check, 2000);
    }
    if (answer.last_polled_at && answer.last_polled_at !== since && !answer.polling) {
      show(answer.status === "ok" || answer.status === "new" ? "done" : "error", "Poll done: " + answer.summary);
      return;
    }
    if (Date.now() - started > NO_WORKER_AFTER_MS) {
      show("waiting", "Poll queued a minute ago and not run yet: is the worker running?");
    }
    setTimeout(check, 1000);
  }
  check();
})();

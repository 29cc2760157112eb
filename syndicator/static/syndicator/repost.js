// The Repost page: as the editor types, ask the server for every target's message and its length
// (the same rendering and counting code the worker and the API use), and show them per target.
"use strict";
(function () {
  const form = document.getElementById("repost-form");
  if (!form) return;
  const text = form.querySelector("textarea[name=text]");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let timer = null;
  let asked = 0;

  function markChosen() {
    for (const card of form.querySelectorAll(".repost-card")) {
      card.classList.toggle("chosen", card.querySelector("input[type=checkbox]").checked);
    }
  }

  function show(card, p) {
    const hide = (selector, value) => {
      const el = card.querySelector(selector);
      el.hidden = !value;
      return el;
    };
    card.querySelector(".length").textContent = p.length;
    const limit = card.querySelector(".limit");
    if (limit) limit.textContent = p.limit;
    card.querySelector(".repost-count").classList.toggle("over", !p.fits);
    card.classList.toggle("too-long", !p.fits);
    hide(".repost-error", p.error).textContent = p.error;
    hide(".repost-subject", p.subject).querySelector("span").textContent = p.subject;
    card.querySelector(".repost-rendered").textContent = p.text;
  }

  async function refresh() {
    const mine = ++asked;
    const response = await fetch(form.dataset.previewUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ text: text.value }),
      credentials: "same-origin",
    });
    if (!response.ok || mine !== asked) return; // a newer answer is on its way
    const previews = (await response.json()).previews;
    for (const card of form.querySelectorAll(".repost-card")) {
      const p = previews[card.dataset.pk];
      if (p) show(card, p);
    }
    form.dataset.previewed = String(mine); // lets a browser test wait for the answer
  }

  text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  form.addEventListener("change", markChosen);
})();

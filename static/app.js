// Behaviour the pages declare with data attributes, so that no page carries inline script (the
// Content-Security-Policy allows scripts from this site's files only, and no data is ever read
// as code: confirm texts and targets are plain attribute values).
(function () {
  // <form data-confirm="Delete x?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  }, true);

  // <select data-navigate>: go to the chosen option's URL (the team and project switcher).
  document.addEventListener("change", function (event) {
    const select = event.target.closest("select[data-navigate]");
    if (select && select.value && select.value.startsWith("/")) window.location.href = select.value;
  });

  // <button data-copy="element-id">: copy that element's text.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    navigator.clipboard.writeText(source.textContent).then(function () { button.textContent = "Copied"; });
  });

  // <time datetime="...Z">: shown in the viewer's time zone, the UTC text kept on hover;
  // with data-relative, as an age ("3 min ago"). Pages render UTC; this runs on load and on
  // every piece htmx swaps in.
  function age(when) {
    const s = Math.round((Date.now() - when.getTime()) / 1000);
    const a = Math.abs(s);
    const text = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min" : a < 86400 ? Math.round(a / 3600) + " h"
      : Math.round(a / 86400) + " d";
    return s >= 0 ? text + " ago" : "in " + text;
  }
  function localize(root) {
    if (!root || !root.querySelectorAll) return;
    const found = Array.from(root.querySelectorAll("time[datetime]"));
    if (root.matches && root.matches("time[datetime]")) found.push(root);
    found.forEach(function (el) {
      if (el.dataset.localized) return;
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      const local = when.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
      el.title = el.textContent.trim() + (el.hasAttribute("data-relative") ? " · " + local : "");
      el.textContent = el.hasAttribute("data-relative") ? age(when) : local;
      el.dataset.localized = "1";
    });
  }
  // A poll's swap (the run page's summary, a run row, every 2 s) waits while a press is under way
  // on what it would replace: a click pressed on the old button and released on the new one is no
  // click at all, so a Cancel pressed at that instant was lost. The next poll swaps instead.
  let pressed = null;
  function press(event) { pressed = event.target; }
  function release() { setTimeout(function () { pressed = null; }, 0); }  // after the click it makes
  document.addEventListener("pointerdown", press, true);
  document.addEventListener("keydown", press, true);
  ["pointerup", "pointercancel", "keyup"].forEach(function (name) { document.addEventListener(name, release, true); });
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    const verb = event.detail.requestConfig && event.detail.requestConfig.verb;
    if (pressed && verb === "get" && target && target.contains(pressed)) event.detail.shouldSwap = false;
  });

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:load", function (event) { localize(event.target); });
})();

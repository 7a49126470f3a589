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
})();

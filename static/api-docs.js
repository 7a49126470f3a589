// Swagger UI for /api/docs, started from a file (no inline script under the Content-Security-Policy).
(function () {
  const ui = document.getElementById("ui");
  window.SwaggerUIBundle({ url: ui.dataset.spec, dom_id: "#ui" });
})();

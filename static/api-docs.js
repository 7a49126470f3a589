// Swagger UI for /api/docs, started from a file (no inline script under the Content-Security-Policy).
(function () {
  const ui = document.getElementById("ui");
  // "Try it out" with the browser's session: a session's API write carries the CSRF token
  // (a bearer key needs none and is sent as typed).
  window.SwaggerUIBundle({
    url: ui.dataset.spec, dom_id: "#ui",
    requestInterceptor: (req) => { req.headers["X-CSRFToken"] = ui.dataset.csrf; return req; },
  });
})();

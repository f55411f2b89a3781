// The API reference over the document this same Envoy serves (GET /openapi.json). "Authorize"
// takes a token from `python -m server tokens create`; "Try it out" calls this origin.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayRequestDuration: true,
  // No badge fetched from the public validator: the page works with no network access.
  validatorUrl: null,
});

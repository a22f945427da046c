// Renders /openapi.yaml. "Try it out" requests go to the server that serves this page,
// whatever address the contract's servers entry names; "Authorize" takes the token from
// POST /api/auth/login.
window.ui = SwaggerUIBundle({
  url: "/openapi.yaml",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  validatorUrl: null,
  tryItOutEnabled: true,
  requestInterceptor: function (req) {
    var u = new URL(req.url, window.location.href);
    if (u.pathname.indexOf("/api/") === 0) {
      req.url = window.location.origin + u.pathname + u.search;
    }
    return req;
  },
});

"""REST API (issue 10): /api/v1/ for integrations, per-user tokens, OpenAPI schema and docs."""

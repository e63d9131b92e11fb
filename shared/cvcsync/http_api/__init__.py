"""The HTTP API: one WSGI application (``app.HttpApi``) behind thin adapters for FC 2.0 (WSGI), FC 3.0, API
Gateway (REST and HTTP APIs) and Lambda function URLs (``adapters``); requests signed with CVCSYNC-HMAC-SHA256
(``signing``, ``auth``) or bearer tokens. ``docs/http-api.md`` describes the routes and how a caller signs."""

"""SCIM 2.0 (RFC 7643, 7644) at ``/scim/v2`` of the HTTP function, for identity providers (docs/scim.md).

``app`` (the sub-application ``http_api.app.HttpApi`` hands SCIM paths to), ``handlers`` (routes and reads),
``writes`` (writes through the one run lifecycle), ``mapping`` (SCIM <-> CVC), ``schemas`` (discovery documents),
``filters`` (filters and paths), ``patch``, ``store`` (resource documents, indexes, locks), ``deletions`` (the
deletion limit), ``settings`` and ``errors``. Nothing here is imported until the first SCIM request.
"""

"""The OpenAPI 3.1 document served at `/openapi.json`, describing every route."""

from __future__ import annotations

import re
from typing import Any

from gateway.version import __version__

ERROR = {"$ref": "#/components/schemas/Error"}

# (method, path, summary, success status, tag)
OPERATIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("post", "/api/event/{token}", "Ingest one event (the secret event URL)", "202", "ingest"),
    ("get", "/healthz", "Process is up", "200", "operations"),
    ("get", "/readyz", "Store reachable and rules loaded", "200", "operations"),
    ("get", "/metrics", "Prometheus metrics", "200", "operations"),
    ("get", "/openapi.json", "This document", "200", "operations"),
    ("post", "/v1/apps", "Create an app; returns its token once", "201", "apps"),
    ("get", "/v1/apps", "List apps", "200", "apps"),
    ("get", "/v1/apps/{app_id}", "Read an app", "200", "apps"),
    ("patch", "/v1/apps/{app_id}", "Rename, enable/disable, limits, schema, secret", "200", "apps"),
    ("delete", "/v1/apps/{app_id}", "Revoke an app", "204", "apps"),
    (
        "post",
        "/v1/apps/{app_id}/rotate",
        "New token; old one valid for grace_seconds",
        "200",
        "apps",
    ),
    (
        "get",
        "/v1/events",
        "List events (app_id, event_type, since, cursor, limit)",
        "200",
        "events",
    ),
    (
        "get",
        "/v1/events/{event_id}",
        "Read an event with its matches and deliveries",
        "200",
        "events",
    ),
    (
        "post",
        "/v1/events/{event_id}/replay",
        "Match again against today's rules and fire",
        "202",
        "events",
    ),
    ("post", "/v1/webhook-targets", "Subscribe a URL; returns its secret once", "201", "targets"),
    ("get", "/v1/webhook-targets", "List webhook targets", "200", "targets"),
    ("get", "/v1/webhook-targets/{target_id}", "Read a webhook target", "200", "targets"),
    (
        "patch",
        "/v1/webhook-targets/{target_id}",
        "Update url, events, filter, status, ...",
        "200",
        "targets",
    ),
    ("delete", "/v1/webhook-targets/{target_id}", "Delete a webhook target", "204", "targets"),
    (
        "post",
        "/v1/webhook-targets/{target_id}/test",
        "Send webhook.test now; returns the attempt",
        "200",
        "targets",
    ),
    (
        "get",
        "/v1/deliveries",
        "Delivery log (status, target_id, rule_id, event_id, since)",
        "200",
        "deliveries",
    ),
    (
        "get",
        "/v1/deliveries/{delivery_id}",
        "Read a delivery with every attempt",
        "200",
        "deliveries",
    ),
    ("post", "/v1/deliveries/{delivery_id}/retry", "Retry a delivery now", "202", "deliveries"),
    (
        "post",
        "/v1/deliveries/recover",
        "Re-queue failed deliveries since a time",
        "202",
        "deliveries",
    ),
    ("get", "/v1/rules", "The live rule set, its version and reload errors", "200", "rules"),
    ("post", "/v1/rules/reload", "Reload the rules directory", "200", "rules"),
    ("post", "/v1/rules/test", "Dry-run an event: matches and rendered requests", "200", "rules"),
    (
        "post",
        "/v1/rules/backtest",
        "Run a rules directory over stored events: matches per rule, nothing sent",
        "200",
        "rules",
    ),
)

INGEST_RESPONSES = {
    "202": "accepted: {accepted, event_id}",
    "200": "duplicate idempotency key: {accepted, event_id, duplicate}",
    "400": "invalid_json / invalid_event",
    "401": "invalid_signature",
    "404": "not_found (unknown, revoked or disabled token)",
    "405": "method_not_allowed",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "422": "schema_violation",
    "429": '{"rateLimited": true} with Retry-After',
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def openapi_document(base_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, status, tag in OPERATIONS:
        op: dict[str, Any] = {
            "summary": summary,
            "tags": [tag],
            "operationId": method + "_" + re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_"),
            "responses": {status: {"description": "success"}},
        }
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if path.startswith("/v1"):
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = _error("missing or wrong admin token")
            if "{" in path:
                op["responses"]["404"] = _error("no such record")
            if method in ("post", "patch"):
                op["responses"]["422"] = _error("validation_error")
        if path == "/api/event/{token}":
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
            op["responses"] = {
                code: {"description": text} for code, text in INGEST_RESPONSES.items()
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookgate",
            "version": __version__,
            "description": "Self-hosted inbound event gateway.",
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                }
            },
        },
    }

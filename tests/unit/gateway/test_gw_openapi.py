"""The OpenAPI document is built from the routes: every route declares its `Operation`."""

from __future__ import annotations

import re
from pathlib import Path

import harness
from starlette.routing import BaseRoute, Mount, Route

from gateway.app import create_app, documented_routes
from gateway.http.ingest import IngestEndpoint
from gateway.http.openapi import openapi_document, operation_of


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    return create_app(harness.make_settings(tmp_path))


def test_every_route_declares_its_operation(tmp_path: Path) -> None:
    app = _app(tmp_path)
    routes = documented_routes(app.starlette)  # every Route, through Mounts
    required = [
        (path, methods, endpoint)
        for path, methods, endpoint in routes
        if path.startswith(("/v1/", "/api/event/"))
        or path in ("/v1", "/healthz", "/readyz", "/metrics")
    ]
    assert len(required) >= 20
    assert len([r for r in app.starlette.routes if isinstance(r, Route)]) <= len(routes)
    missing = [
        f"{methods} {path}" for path, methods, endpoint in required if not operation_of(endpoint)
    ]
    assert missing == [], f"routes without an Operation (add @operation next to them): {missing}"
    assert operation_of(IngestEndpoint) is not None


def _served(routes: list[BaseRoute], prefix: str) -> list[tuple[str, Route]]:
    """Every Route the app serves, mounts walked here rather than by the code under test."""
    out: list[tuple[str, Route]] = []
    for r in routes:
        if isinstance(r, Mount) and not r.path.startswith("/console"):
            out += _served(r.routes, prefix + r.path)
        elif isinstance(r, Route):
            out.append((prefix + r.path, r))
    return out


def test_document_lists_every_route_with_its_statuses_and_schemas(tmp_path: Path) -> None:
    app = _app(tmp_path)
    doc = openapi_document("http://example.test", documented_routes(app.starlette))
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (m, path) for path, r in _served(app.starlette.routes, "") for m in r.methods or ()
    } - {(m, p) for m, p in [("HEAD", p) for p, _ in _served(app.starlette.routes, "")]}
    served |= {("POST", "/api/event/{token}")}
    assert documented == served
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = set(re.findall(r"\{([^}]+)\}", path))
            assert {p["name"] for p in op.get("parameters", []) if p["in"] == "path"} == params
            if path.startswith("/v1"):
                assert {"401", "503"} <= set(op["responses"]), (method, path)
                if params:
                    assert "404" in op["responses"], (method, path)
                if "requestBody" in op:
                    assert "400" in op["responses"], (method, path)
            for status, response in op["responses"].items():
                if status != "204":
                    assert "content" in response, (method, path, status)
    # every $ref resolves
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', str(doc).replace("'", '"')):
        assert ref in schemas
    apps = doc["paths"]["/v1/apps"]
    assert apps["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AppCreate"
    }
    assert schemas["AppCreate"]["required"] == ["name"]
    assert "422" in apps["post"]["responses"]
    assert {q["name"] for q in doc["paths"]["/v1/deliveries"]["get"]["parameters"]} >= {
        "status",
        "target_id",
        "rule_id",
        "event_id",
        "since",
        "cursor",
        "limit",
    }
    ingest = doc["paths"]["/api/event/{token}"]["post"]
    assert {"200", "202", "400", "401", "404", "413", "415", "422", "429", "503"} <= set(
        ingest["responses"]
    )
    assert "security" not in ingest


def test_record_schemas_follow_the_typed_records(tmp_path: Path) -> None:
    doc = openapi_document("http://example.test", documented_routes(_app(tmp_path).starlette))
    schemas = doc["components"]["schemas"]
    delivery = schemas["DeliveryRecord"]
    assert delivery["additionalProperties"] is False
    assert "attempts" in delivery["properties"] and "attempts" not in delivery["required"]
    assert delivery["properties"]["status"] == {
        "enum": ["scheduled", "pending", "held", "succeeded", "failed", "skipped", "cancelled"]
    }
    assert {"id", "name", "token", "event_url"} <= set(schemas["AppRecord"]["properties"])
    assert "token" not in schemas["AppRecord"]["required"]

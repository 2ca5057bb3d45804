"""The OpenAPI 3.1 document served at `/openapi.json`, built from the routes themselves.

Each endpoint carries its `Operation` (attached with `@operation(...)` next to its code):
summary, request body, query parameters, success schema and every error status it can
answer. Schemas come from the `TypedDict`s that type the JSON the endpoint returns, so a
field added to a record shows up here, and a route without an `Operation` fails
`tests/unit/gateway/test_gw_openapi.py` instead of silently missing from the document.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from typing_extensions import is_typeddict

from gateway.version import __version__

OPENAPI_ATTRIBUTE = "__openapi__"

# Statuses every `/v1` operation can answer, whatever it does.
ADMIN_ERRORS: Mapping[int, str] = {
    401: "unauthorized: missing or wrong admin token",
    503: "store_unavailable: the store did not answer",
}


@dataclass(frozen=True, slots=True)
class Query:
    """One query parameter: its name, JSON Schema and what it filters."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Operation:
    """The spec of one endpoint: what the document says about it.

    `response` and `body` are a `TypedDict` (or a JSON Schema mapping, or None for no
    body); `errors` maps each error status the endpoint itself can answer to what it means
    (the admin statuses, 400 for a body or query that cannot be parsed, 404 for a path
    record are added from the route's shape)."""

    summary: str
    tag: str
    status: int = 200
    response: Any = None
    body: Any = None
    body_required: bool = True
    query: tuple[Query, ...] = ()
    errors: Mapping[int, str] = field(default_factory=dict)
    admin: bool = True
    media_type: str = "application/json"
    response_headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    extra_success: Mapping[int, tuple[str, Any]] = field(default_factory=dict)


class Constraint:
    """`Annotated[int, Constraint(minimum=1)]`: JSON Schema keywords the value must meet
    (hashable, as `Annotated` metadata must be)."""

    __slots__ = ("keywords",)

    def __init__(self, **keywords: Any) -> None:
        self.keywords = tuple(keywords.items())

    def __hash__(self) -> int:
        return hash(repr(self.keywords))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraint) and self.keywords == other.keywords


E = TypeVar("E")


def operation(spec: Operation) -> Callable[[E], E]:
    """Attach `spec` to an endpoint (function or class): `@operation(Operation(...))`."""

    def attach(endpoint: E) -> E:
        setattr(endpoint, OPENAPI_ATTRIBUTE, spec)
        return endpoint

    return attach


def operation_of(endpoint: Any) -> Operation | None:
    spec = getattr(endpoint, OPENAPI_ATTRIBUTE, None)
    return spec if isinstance(spec, Operation) else None


class Schemas:
    """JSON Schemas of Python types; each `TypedDict` once, under components/schemas."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {
            "Error": {
                "type": "object",
                "description": 'Every error: {"error": "<snake_case code>", "detail": ...}; '
                "some carry more fields (field, parameter, errors).",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "detail": {"type": "string"},
                    "field": {"type": "string"},
                    "parameter": {"type": "string"},
                },
            },
            "RateLimited": {
                "type": "object",
                "required": ["rateLimited"],
                "properties": {"rateLimited": {"const": True}},
                "additionalProperties": False,
            },
        }

    def of(self, tp: Any) -> dict[str, Any]:
        if isinstance(tp, Mapping):
            return dict(tp)
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
        if tp in simple:
            return {"type": simple[tp]}
        origin = get_origin(tp)
        args = get_args(tp)
        if origin is Annotated:  # the type plus its constraints
            schema = self.of(args[0])
            for extra in args[1:]:
                if isinstance(extra, Constraint):
                    schema.update(extra.keywords)
            return schema
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(a) for a in args]}
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (list, tuple) or origin is Iterable:
            return {"type": "array", "items": self.of(args[0]) if args else {}}
        if origin is dict or tp is dict:
            return {"type": "object"}
        if is_typeddict(tp):
            return self._typeddict(tp)
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _typeddict(self, tp: Any) -> dict[str, Any]:
        name = tp.__name__
        if name not in self.components:
            self.components[name] = {}  # placeholder: a record may refer to itself
            hints = get_type_hints(tp, include_extras=True)
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {key: self.of(hint) for key, hint in hints.items()},
                "additionalProperties": False,
            }
            required = sorted(tp.__required_keys__)
            if required:
                schema["required"] = required
            if tp.__doc__:
                schema["description"] = " ".join(tp.__doc__.split())
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _content(schemas: Schemas, tp: Any, media_type: str) -> dict[str, Any]:
    return {media_type: {"schema": schemas.of(tp)}}


def build_operation(schemas: Schemas, method: str, path: str, spec: Operation) -> dict[str, Any]:
    """The OpenAPI operation object of one route."""
    params = re.findall(r"\{([^}:]+)(?::[^}]*)?\}", path)
    errors: dict[int, str] = {}
    if spec.admin:
        errors.update(ADMIN_ERRORS)
    if params and spec.admin:
        errors[404] = "not_found: no such record"
    if spec.body is not None and spec.admin:
        errors[400] = "invalid_json: the body is not a JSON object"
    if spec.query:
        errors[400] = "invalid_parameter / invalid_cursor: a query parameter is unknown or bad"
    errors.update(spec.errors)

    success: dict[str, Any] = {"description": spec.summary}
    if spec.response is not None:
        success["content"] = _content(schemas, spec.response, spec.media_type)
    responses: dict[str, Any] = {str(spec.status): success}
    for status, (text, tp) in spec.extra_success.items():
        responses[str(status)] = {
            "description": text,
            "content": _content(schemas, tp, "application/json"),
        }
    for status, text in sorted(errors.items()):
        responses[str(status)] = _error(text, "RateLimited" if status == 429 else "Error")
    for status, headers in spec.response_headers.items():
        responses[str(status)]["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }

    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "operationId": method + "_" + re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_"),
        "responses": responses,
    }
    parameters: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
    ]
    parameters += [
        {"name": q.name, "in": "query", "description": q.description, "schema": dict(q.schema)}
        for q in spec.query
    ]
    if parameters:
        op["parameters"] = parameters
    if spec.body is not None:
        op["requestBody"] = {
            "required": spec.body_required,
            "content": _content(schemas, spec.body, "application/json"),
        }
    if spec.admin:
        op["security"] = [{"bearer": []}]
    return op


def _link_creates(paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from each create (`POST /v1/x` answering 201 with an `id`) to every
    operation on `/v1/x/{x_id}...`: clients and schemathesis's stateful phase follow them."""
    for path, ops in paths.items():
        created = ops.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links: dict[str, Any] = {}
        for other, other_ops in paths.items():
            match = re.fullmatch(re.escape(path) + r"/\{([^}/]+)\}(/.*)?", other)
            if match is None:
                continue
            for op in other_ops.values():
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {match.group(1): "$response.body#/id"},
                }
        if links:
            created["links"] = links


def openapi_document(
    base_url: str, routes: Iterable[tuple[str, Iterable[str], Any]]
) -> dict[str, Any]:
    """The document for `routes`, each (path, methods, endpoint). An endpoint without an
    `Operation` is left out (the unit test fails on it); HEAD is implied by GET."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for path, methods, endpoint in routes:
        spec = operation_of(endpoint)
        if spec is None:
            continue
        for method in sorted(m.lower() for m in methods if m.upper() != "HEAD"):
            paths.setdefault(path, {})[method] = build_operation(schemas, method, path, spec)
    _link_creates(paths)
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
            "schemas": schemas.components,
        },
    }

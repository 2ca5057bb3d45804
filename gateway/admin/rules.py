"""`/v1/rules`: the live rule set, reload, and a dry run of one event."""

from __future__ import annotations

from typing import Any, TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import rfc3339
from gateway.admin import gateway_of
from gateway.dryrun import dry_run, secret_lookup
from gateway.errors import InvalidInput
from gateway.http import JSONResponse, admin, parse_cursor, query_params, read_object
from gateway.openapi import Operation, Query, operation
from gateway.runtime import Gateway
from rules import Rule, RuleError


class RuleErrorRecord(TypedDict):
    file: str | None
    rule_id: str | None
    message: str
    text: str


class RuleState(TypedDict):
    """The live rule set: its version, files, reload errors and every rule."""

    version: str
    dir: str
    files: list[str]
    loaded_at: str | None
    last_reload_at: str | None
    ok: bool
    errors: list[RuleErrorRecord]
    data: list[dict[str, Any]]
    next_cursor: None


class Reloaded(TypedDict):
    ok: bool
    version: str
    rules: int


class DryRunRequest(TypedDict, total=False):
    """`event` (required) as the app named `app` would post it."""

    event: dict[str, Any]
    app: str


def rule_json(rule: Rule) -> dict[str, Any]:
    out = rule.content()
    out["source"] = rule.source
    return out


def error_json(error: RuleError) -> RuleErrorRecord:
    return {
        "file": error.file,
        "rule_id": error.rule_id,
        "message": error.message,
        "text": str(error),
    }


def state_json(gw: Gateway) -> RuleState:
    state = gw.rules
    return {
        "version": state.version,
        "dir": str(state.dir),
        "files": list(state.files),
        "loaded_at": rfc3339(state.loaded_at) if state.loaded_at else None,
        "last_reload_at": rfc3339(state.last_attempt_at) if state.last_attempt_at else None,
        "ok": not state.errors,
        "errors": [error_json(e) for e in state.errors],
        "data": [rule_json(r) for r in state.current.rules],
        "next_cursor": None,
    }


@operation(
    Operation(
        "The live rule set, its version and reload errors",
        "rules",
        response=RuleState,
        query=(Query("cursor", "not paged: only an empty cursor is accepted"),),
    )
)
@admin
async def list_rules(request: Request) -> Response:
    parse_cursor(query_params(request, "cursor"), None)  # not paged: every record
    return JSONResponse(state_json(gateway_of(request)))


@operation(
    Operation(
        "Reload the rules directory",
        "rules",
        response=Reloaded,
        errors={422: "invalid_rules: the previous rule set stays active"},
    )
)
@admin
async def reload(request: Request) -> Response:
    gw = gateway_of(request)
    errors = await gw.rules.reload()
    if errors:
        return JSONResponse(
            {
                "error": "invalid_rules",
                "detail": f"{len(errors)} error(s); the previous rule set stays active",
                "version": gw.rules.version,
                "errors": [error_json(e) for e in errors],
            },
            status_code=422,
        )
    return JSONResponse({"ok": True, "version": gw.rules.version, "rules": len(gw.rules.current)})


@operation(
    Operation(
        "Dry-run an event: matches and rendered requests (nothing sent)",
        "rules",
        response=dict[str, Any],
        body=DryRunRequest,
        errors={422: "validation_error: event is not an object or app not a name"},
    )
)
@admin
async def test(request: Request) -> Response:
    body = await read_object(request)
    event = body.get("event")
    if not isinstance(event, dict):
        raise InvalidInput("event", "must be a JSON object (the event to test)")
    app = body.get("app", "")
    if not isinstance(app, str):
        raise InvalidInput("app", "must be an app name")
    gw = gateway_of(request)
    return JSONResponse(dry_run(gw.rules.current, app, event, secret_lookup(gw.rules.targets)))


routes = [
    Route("/v1/rules", list_rules, methods=["GET"]),
    Route("/v1/rules/reload", reload, methods=["POST"]),
    Route("/v1/rules/test", test, methods=["POST"]),
]

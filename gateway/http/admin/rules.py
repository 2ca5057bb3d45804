"""`/v1/rules`: the live rule set, reload, and a dry run of one event."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actions import rfc3339
from gateway.errors import InvalidInput
from gateway.http.admin import gateway_of
from gateway.http.admin_io import JSONResponse, parse_cursor, query_params, read_object
from gateway.http.openapi import Operation, Query, operation
from gateway.rulesets.backtest import backtest as run_backtest
from gateway.rulesets.backtest import parse_moment
from gateway.rulesets.dryrun import dry_run, secret_lookup
from gateway.rulesets.state import load_rule_files
from gateway.runtime import Gateway
from rules import Rule, RuleError, RuleSet


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


class BacktestRequest(TypedDict, total=False):
    """`since` (required): a duration back (`7d`, `1h`) or an RFC 3339 time."""

    since: str
    until: str
    app: str
    dir: str


class RuleTally(TypedDict):
    rule_id: str
    matched: int
    sample_event_ids: list[str]
    sample_body: Any


class BacktestReport(TypedDict):
    """Per rule of the candidate set: matches among the stored events in the window."""

    since: str
    until: str | None
    app: str | None
    events_scanned: int
    events_unreadable: int
    seconds: float
    rules: list[RuleTally]
    dir: str


@operation(
    Operation(
        "Backtest a rule directory against stored events (sends nothing)",
        "rules",
        response=BacktestReport,
        body=BacktestRequest,
        errors={
            422: "validation_error: since/until/app/dir invalid; invalid_rules: the"
            " candidate rules do not load"
        },
    )
)
async def backtest(request: Request) -> Response:
    """How a candidate rule directory would have matched the stored events; sends nothing."""
    body = await read_object(request)
    gw = gateway_of(request)
    now = time.time()
    if body.get("since") is None:
        raise InvalidInput("since", "is required: a duration back (7d, 1h) or an RFC 3339 time")
    since = parse_moment(body.get("since"), "since", now)
    until = parse_moment(body["until"], "until", now) if body.get("until") is not None else None
    if until is not None and until <= since:
        raise InvalidInput("until", "must be later than since")
    app_id = None
    app_name = body.get("app")
    if app_name is not None:
        if not isinstance(app_name, str) or not app_name:
            raise InvalidInput("app", "must be an app name or id")
        app = await gw.store.find_app(app_name)
        if app is None:
            raise InvalidInput("app", f"no app is named {app_name!r}")
        app_id = app.id
    directory = body.get("dir", str(gw.settings.rules.dir))
    if not isinstance(directory, str) or not directory:
        raise InvalidInput("dir", "must be the path of a rules directory")
    result = await asyncio.to_thread(load_rule_files, Path(directory), gw.logic, missing_ok=False)
    if result.errors:
        return JSONResponse(
            {
                "error": "invalid_rules",
                "detail": f"{len(result.errors)} error(s) in {directory}",
                "field": "dir",
                "errors": [error_json(e) for e in result.errors],
            },
            status_code=422,
        )
    ruleset = RuleSet(result.rules, logic=gw.logic)
    report = await run_backtest(gw.store, ruleset, since=since, until=until, app_id=app_id)
    out = report.content()
    out["dir"] = directory
    return JSONResponse(out)


routes = [
    Route("/rules", list_rules, methods=["GET"]),
    Route("/rules/reload", reload, methods=["POST"]),
    Route("/rules/test", test, methods=["POST"]),
    Route("/rules/backtest", backtest, methods=["POST"]),
]

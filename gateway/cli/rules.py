"""`hookgate rules`: check a rules directory, dry-run an event, backtest stored events."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.cli.common import (
    Parents,
    Subparsers,
    print_json,
    table,
    with_store,
)
from gateway.config import Settings
from gateway.errors import InvalidInput
from gateway.store import Store


def _store_view(settings: Settings) -> tuple[list[Any], list[Any]] | None:
    """The apps and webhook targets of the configured store, or None when it is not
    reachable (memory store, no SQLite file yet, Redis down): rule checks go on without."""
    from gateway.store import db_path

    if settings.storage.backend == "memory":
        return None
    if settings.storage.backend == "sqlite" and not Path(db_path(settings)).exists():
        return None

    async def read(store: Store) -> tuple[list[Any], list[Any]]:
        return list(await store.list_apps()), list(await store.list_targets())

    try:
        return with_store(settings, read)
    except Exception as exc:
        print(
            f"hookgate: store not reachable, apps and targets not checked: {exc}", file=sys.stderr
        )
        return None


# rules
def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.rulesets.state import load_rule_files
    from rules import Logic

    directory = Path(getattr(args, "dir", None) or settings.rules.dir)
    logic = Logic(default_region=settings.rules.default_region)
    result = load_rule_files(directory, logic, missing_ok=False)
    if args.action == "backtest":
        return _rules_backtest(args, settings, result, logic)
    known = _store_view(settings)
    if args.action == "check":
        # A missing directory is one of the errors, printed like the others.
        findings = [
            {"file": e.file, "rule_id": e.rule_id, "message": e.message, "level": "error"}
            for e in result.errors
        ]
        if known is not None:
            names = {a.name for a in known[0]}
            for rule in result.rules:
                for name in sorted(rule.apps - names):
                    findings.append(
                        {
                            "file": rule.source,
                            "rule_id": rule.id,
                            "message": f"apps: no app is named {name!r}",
                            "level": "warning",
                        }
                    )
        if args.json:
            print_json(findings)
        else:
            for error in result.errors:
                print(error)
            for f in findings:
                if f["level"] == "warning":
                    print(f"warning: {f['file']}:{f['rule_id']}: {f['message']}")
            if not result.errors:
                print(f"{len(result.rules)} rules OK")
        return 1 if result.errors else 0
    # test
    if result.errors:
        for error in result.errors:
            print(error, file=sys.stderr)
        return 1
    try:
        event = orjson.loads(Path(args.event).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"hookgate: cannot read {args.event}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(event, dict):
        print(f"hookgate: {args.event}: the event must be a JSON object", file=sys.stderr)
        return 1
    from gateway.rulesets.dryrun import dry_run, secret_lookup
    from gateway.rulesets.state import target_rule
    from rules import RuleSet

    targets = {t.id: t for t in known[1]} if known is not None else {}
    ruleset = RuleSet(
        (
            *result.rules,
            *(target_rule(t, logic) for t in targets.values() if t.status == "active"),
        ),
        event_type_fields=settings.ingest.event_type_fields,
        logic=logic,
    )
    report = dry_run(ruleset, args.app or "", event, secret_lookup(targets))
    if args.json:
        print_json(report)
        return 0
    print(f"event type: {report['event_type']}")
    for verdict in report["rules"]:
        if not verdict["matched"]:
            print(f"[{verdict['rule_id']}] no match: {verdict['reason']}")
        if verdict["missing_vars"]:
            print(
                f"[{verdict['rule_id']}] missing from the event: "
                + ", ".join(verdict["missing_vars"])
            )
    if not report["matched_rules"]:
        print("no rules match")
        return 0
    print("matching rules: " + ", ".join(report["matched_rules"]))
    for request in report["requests"]:
        print(
            f"\n[{request['rule_id']}] {request['action_type']} -> {request['method']} "
            f"{request['url']}"
        )
        if "error" in request:
            print(f"  error: {request['error']}")
            continue
        for name, value in request["headers"].items():
            print(f"  {name}: {value}")
        print(orjson.dumps(request["body"], option=orjson.OPT_INDENT_2).decode())
    return 0


# events
def _rules_backtest(args: argparse.Namespace, settings: Settings, result: Any, logic: Any) -> int:
    """`hookgate rules backtest`: the candidate rules over the stored events, nothing sent."""
    from gateway.rulesets.backtest import backtest, parse_moment
    from rules import RuleSet

    if result.errors:
        for error in result.errors:
            print(error, file=sys.stderr)
        return 1
    now = time.time()
    try:
        since = parse_moment(args.since, "--since", now)
        until = parse_moment(args.until, "--until", now) if args.until else None
    except InvalidInput as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 2
    ruleset = RuleSet(result.rules, logic=logic)

    async def run(store: Store) -> int:
        app_id = None
        if args.app:
            app = await store.find_app(args.app)
            if app is None:
                print(f"hookgate: --app: no app is named {args.app!r}", file=sys.stderr)
                return 2
            app_id = app.id
        report = await backtest(store, ruleset, since=since, until=until, app_id=app_id)
        if args.json:
            print_json(report.content())
            return 0
        print(f"{report.events} events scanned in {report.seconds:.2f} s (nothing sent)")
        table(
            [(t.rule_id, t.matched, " ".join(t.sample_event_ids) or "-") for t in report.rules],
            ["RULE", "MATCHED", "SAMPLE EVENTS"],
        )
        for t in report.rules:
            if t.sample_body is not None:
                print(f"{t.rule_id}: {orjson.dumps(t.sample_body).decode()}")
        return 0

    return with_store(settings, run)


def add_commands(sub: Subparsers, parents: Parents) -> None:
    rules = sub.add_parser("rules", help="rule files").add_subparsers(dest="action", required=True)
    check = rules.add_parser("check", parents=[parents.records], help="validate a rules directory")
    check.add_argument("dir", nargs="?", help="rules directory (default rules.dir)")
    test = rules.add_parser(
        "test", parents=[parents.records], help="dry-run an event against the rules"
    )
    test.add_argument("event", help="file with the event JSON")
    test.add_argument("--app", help="app name the event comes from")
    test.add_argument("--dir", help="rules directory (default rules.dir)")
    backtest = rules.add_parser(
        "backtest", parents=[parents.records], help="match stored events against a rules directory"
    )
    backtest.add_argument("dir", nargs="?", help="rules directory (default rules.dir)")
    backtest.add_argument(
        "--since", required=True, help="window start: a duration back (7d, 1h) or RFC 3339"
    )
    backtest.add_argument("--until", help="window end: a duration back or RFC 3339 (default now)")
    backtest.add_argument("--app", help="only this app's events (name or id)")
    for p in rules.choices.values():
        p.set_defaults(func=cmd_rules)

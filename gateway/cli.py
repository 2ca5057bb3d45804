"""`hookgate`: serve the gateway and do every operator task from the shell (docs/design.md §8-9).

Commands that touch records open the configured store directly, so they work with the
server running or stopped; a running server notices app changes within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway import app_records
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, InvalidInput
from gateway.ids import is_id
from gateway.inbound_signatures import SCHEMES as SIGNATURE_SCHEMES
from gateway.records import delivery_json, event_json, shown_status
from gateway.served_url import with_served_url
from gateway.store import DeliveryFilter, Store, build_store
from gateway.version import __version__
from rules import HookgateError

T = TypeVar("T")
SWITCH_INTERVAL = 0.0005


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
    if settings.storage.backend == "memory":
        raise ConfigError(
            "the memory store lives inside a server process;"
            " the CLI needs sqlite, redis or postgres"
        )

    async def run() -> T:
        store = build_store(settings)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


# serve
def _rule_errors_at_start(settings: Settings) -> int | None:
    """Exit status 2 after printing every rule error, before anything is bound; None if
    the rules load. A running gateway keeps its last good set on a bad reload, but at a cold
    start there is none: serving with no rules would accept events and trigger nothing."""
    from gateway.rulestate import load_rule_files
    from rules import Logic

    logic = Logic(default_region=settings.rules.default_region)
    # A missing directory is zero rules, as at every reload; a bad file is not.
    result = load_rule_files(settings.rules.dir, logic, missing_ok=True)
    if result.ok:
        return None
    for error in result.errors:
        print(error, file=sys.stderr)
    count = len(result.errors)
    print(
        f"hookgate: not starting: {count} rule error{'s' if count > 1 else ''} "
        f"in {settings.rules.dir} (see `hookgate rules check`)",
        file=sys.stderr,
        flush=True,
    )
    return 2


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.logs import configure_logging
    from gateway.redis_preflight import check_redis
    from gateway.runtime import admin_token_path, ensure_admin_token
    from gateway.serving import ListenError, listen, serve

    refused = _rule_errors_at_start(settings)
    if refused is not None:
        return refused
    check_redis(settings)
    try:
        sock = listen(settings, args.fd)
    except ListenError as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings.log.level)
    # The SQLite writer thread needs the GIL for a moment per statement while the event
    # loop holds it serving requests; at the default 5 ms switch interval each hand-off can
    # stall the group commit every waiting request depends on (measured: +15% req/s).
    sys.setswitchinterval(SWITCH_INTERVAL)
    token, generated = ensure_admin_token(settings)
    if generated:
        print(f"hookgate admin token (shown once; kept in {admin_token_path(settings)}):")
        print(f"  {token}", flush=True)
    elif not settings.server.admin_token:
        print(f"hookgate admin token: see {admin_token_path(settings)}", flush=True)
    return serve(settings, sock, config_path=args.config)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.redis_preflight import check_redis
    from gateway.worker import main as worker_main

    if settings.storage.backend == "memory":
        raise ConfigError(
            "a delivery worker needs a shared store (storage.backend = sqlite, redis or postgres)"
        )
    check_redis(settings)
    return worker_main(settings)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the PostgreSQL store's schema migrations alone (a gateway also applies them
    when it starts; this lets a deploy migrate once, before starting new gateways)."""
    if settings.storage.backend != "postgres":
        raise ConfigError(
            'hookgate migrate is for storage.backend = "postgres"; the sqlite and redis'
            " stores need no migrations run apart"
        )
    from gateway.store.postgres import run_migrations

    applied, version = asyncio.run(run_migrations(settings.storage.postgres_url))
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema at version {version}")
    else:
        print(f"schema up to date at version {version}")
    return 0


# apps
def cmd_apps(args: argparse.Namespace, settings: Settings) -> int:
    schema = None
    if getattr(args, "schema", None):
        try:
            schema = orjson.loads(Path(args.schema).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"hookgate: cannot read schema file {args.schema}: {exc}", file=sys.stderr)
            return 2

    async def run(store: Store) -> int:
        if args.action == "create":
            app, token = await app_records.create_app(
                store,
                args.name,
                rate=args.rate,
                burst=args.burst,
                schema=schema,
                signing_secret=args.signing_secret,
                signature_scheme=args.signature_scheme,
            )
            record = app_records.app_json(app, with_served_url(settings), token)
            if args.json:
                _print_json(record)
            else:
                print(f"created app {app.name} ({app.id})")
                print(f"event URL (shown once): {record['event_url']}")
                print(f"token: {token}")
            return 0
        if args.action == "list":
            apps = await store.list_apps()
            if args.json:
                _print_json([app_records.app_json(a, settings) for a in apps])
            else:
                _table(
                    [
                        (
                            a.id,
                            a.name,
                            "yes" if a.enabled else "no",
                            app_records.app_json(a, settings)["rate"],
                            app_records.app_json(a, settings)["burst"],
                        )
                        for a in apps
                    ],
                    ("ID", "NAME", "ENABLED", "RATE", "BURST"),
                )
            return 0
        found = await store.find_app(args.id)
        if found is None:
            print(f"hookgate: no app {args.id!r}", file=sys.stderr)
            return 1
        app = found
        if args.action == "show":
            _print_json(app_records.app_json(app, settings))
        elif args.action == "rotate":
            app, token = await app_records.rotate_token(store, app, args.grace)
            record = app_records.app_json(app, with_served_url(settings), token)
            if args.json:
                _print_json(record)
            else:
                print(f"new event URL (shown once): {record['event_url']}")
                print(f"token: {token}")
        elif args.action == "update":
            changes = {
                key: value
                for key, value in (
                    ("rate", args.rate),
                    ("burst", args.burst),
                    ("signing_secret", args.signing_secret),
                    ("signature_scheme", args.signature_scheme),
                )
                if value is not None
            }
            if not changes:
                print("hookgate: apps update: nothing to change", file=sys.stderr)
                return 2
            app = await app_records.update_app(store, app, changes)
            if args.json:
                _print_json(app_records.app_json(app, settings))
            else:
                print(f"updated app {app.name} ({', '.join(sorted(changes))})")
        elif args.action in ("disable", "enable"):
            app = await app_records.update_app(store, app, {"enabled": args.action == "enable"})
            if args.json:
                _print_json(app_records.app_json(app, settings))
            else:
                print(f"app {app.name} {'enabled' if app.enabled else 'disabled'}")
        elif args.action == "delete":
            await store.delete_app(app.id)
            if args.json:
                _print_json({"deleted": True, "id": app.id, "name": app.name})
            else:
                print(f"deleted app {app.name} ({app.id})")
        return 0

    return _with_store(settings, run)


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
        return _with_store(settings, read)
    except Exception as exc:
        print(
            f"hookgate: store not reachable, apps and targets not checked: {exc}", file=sys.stderr
        )
        return None


# rules
def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.rulestate import load_rule_files
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
            _print_json(findings)
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
    from gateway.dryrun import dry_run, secret_lookup
    from gateway.rulestate import target_rule
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
        _print_json(report)
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
    from gateway.backtest import backtest, parse_moment
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
            _print_json(report.content())
            return 0
        print(f"{report.events} events scanned in {report.seconds:.2f} s (nothing sent)")
        _table(
            [(t.rule_id, t.matched, " ".join(t.sample_event_ids) or "-") for t in report.rules],
            ["RULE", "MATCHED", "SAMPLE EVENTS"],
        )
        for t in report.rules:
            if t.sample_body is not None:
                print(f"{t.rule_id}: {orjson.dumps(t.sample_body).decode()}")
        return 0

    return _with_store(settings, run)


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.http import parse_time

    async def run(store: Store) -> int:
        if args.action == "list":
            app_id = args.app_id
            found = await store.find_app(app_id) if app_id else None
            if found is not None:
                app_id = found.id
            page = await store.list_events(
                app_id=app_id,
                event_type=args.event_type,
                since=parse_time(args.since, "since"),
                cursor=args.cursor,
                limit=args.limit,
            )
            if app_id and found is None and not page.data:
                # Events of a deleted app keep its id; anything else is a mistyped id.
                print(f"hookgate: no app has the id or name {app_id!r}", file=sys.stderr)
                return 1
            if args.json:
                _print_json(
                    {"data": [event_json(e) for e in page.data], "next_cursor": page.next_cursor}
                )
            else:
                _table(
                    [
                        (
                            e.id,
                            e.app_id,
                            e.event_type,
                            event_json(e)["received_at"],
                            ",".join(e.matched_rules),
                        )
                        for e in page.data
                    ],
                    ("ID", "APP", "TYPE", "RECEIVED", "MATCHED"),
                )
                if page.next_cursor:
                    print(f"more: --cursor {page.next_cursor}")
            return 0
        event = await store.get_event(args.id)
        if event is None:
            print(f"hookgate: no event {args.id!r}", file=sys.stderr)
            return 1
        _print_json(event_json(event, await store.deliveries_for_event(event.id)))
        return 0

    return _with_store(settings, run)


# deliveries
def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.http import parse_time, required_time

    async def run(store: Store) -> int:
        now = time.time()
        if args.action == "list":
            page = await store.list_deliveries(
                DeliveryFilter(
                    status=args.status,
                    target_id=args.target_id,
                    rule_id=args.rule_id,
                    event_id=args.event_id,
                    since=parse_time(args.since, "since"),
                ),
                cursor=args.cursor,
                limit=args.limit,
            )
            if args.json:
                _print_json(
                    {
                        "data": [delivery_json(d, attempts=False) for d in page.data],
                        "next_cursor": page.next_cursor,
                    }
                )
            else:
                _table(
                    [
                        (
                            d.id,
                            shown_status(d, now),
                            d.attempt_count,
                            d.rule_id or d.target_id,
                            d.url,
                        )
                        for d in page.data
                    ],
                    ("ID", "STATUS", "ATTEMPTS", "RULE/TARGET", "URL"),
                )
            return 0
        if args.action == "recover":
            since = required_time(args.since, "since")
            ids = await store.failed_since(since, args.target_id)
            count = await store.requeue(ids, time.time()) if ids else 0
            if args.json:
                _print_json({"requeued": count, "delivery_ids": ids})
            else:
                print(f"requeued {count} failed deliveries")
            return 0
        delivery = await store.get_delivery(args.id)
        if delivery is None:
            print(f"hookgate: no delivery {args.id!r}", file=sys.stderr)
            return 1
        if args.action == "show":
            _print_json(delivery_json(delivery))
        elif args.action == "retry":
            if delivery.status == "succeeded" and not args.force:
                print(
                    f"hookgate: delivery {delivery.id} already succeeded; "
                    "pass --force to send it again",
                    file=sys.stderr,
                )
                return 1
            await store.requeue([delivery.id], time.time())
            print(f"delivery {delivery.id} queued for retry")
        elif args.action == "cancel":
            if not await store.cancel([delivery.id]):
                print(
                    f"hookgate: delivery {delivery.id} is {delivery.status}; only a scheduled"
                    " or pending delivery can be cancelled",
                    file=sys.stderr,
                )
                return 1
            print(f"delivery {delivery.id} cancelled")
        return 0

    return _with_store(settings, run)


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from actions import run_listen

    run_listen(args.port, secret=args.secret, status=args.status, all_headers=args.headers == "all")
    return 0


def _page_limit(value: str) -> int:
    """`--limit`: records per page, 1-500 as in the API (the store cannot page by 0)."""
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {value!r}") from None
    if not 1 <= limit <= 500:
        raise argparse.ArgumentTypeError(f"must be between 1 and 500, not {limit}")
    return limit


def _cursor(prefix: str) -> Callable[[str], str]:
    """`--cursor`: a `next_cursor` the list printed, refused otherwise (as the API does)."""

    def parse(value: str) -> str:
        if not is_id(value, prefix):
            raise argparse.ArgumentTypeError(f"not a cursor this list printed: {value!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookgate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action="version", version=f"hookgate {__version__}", help="print the version"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        help="TOML settings file (default $HOOKGATE_CONFIG, else ./hookgate.toml if present)",
    )
    # Only commands that print records take --json; on the others it would mean nothing.
    records = argparse.ArgumentParser(add_help=False, parents=[common])
    records.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="address to listen on (default server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default server.port)")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    apps = sub.add_parser("apps", help="integration apps").add_subparsers(
        dest="action", required=True
    )
    create = apps.add_parser("create", parents=[records], help="create an app; prints its URL")
    create.add_argument("name", help="app name (letters, digits, . _ -)")
    create.add_argument("--rate", type=float, help="events per second (default limits.app_rate)")
    create.add_argument("--burst", type=int, help="bucket size (default limits.app_burst)")
    create.add_argument("--schema", help="JSON Schema file events must satisfy")
    create.add_argument(
        "--signing-secret",
        help="secret for inbound signatures (whsec_<base64> for standard-webhooks)",
    )
    create.add_argument(
        "--signature-scheme",
        choices=SIGNATURE_SCHEMES,
        help="how senders sign requests (default with a secret: standard-webhooks)",
    )
    apps.add_parser("list", parents=[records], help="list apps")
    update = apps.add_parser("update", parents=[records], help="change an app's settings")
    update.add_argument("id", help="app id or name")
    update.add_argument("--rate", type=float, help="events per second")
    update.add_argument("--burst", type=int, help="bucket size")
    update.add_argument("--signing-secret", help="new secret for inbound signatures")
    update.add_argument(
        "--signature-scheme", choices=SIGNATURE_SCHEMES, help="how senders sign requests"
    )
    for name in ("show", "rotate", "disable", "enable", "delete"):
        p = apps.add_parser(name, parents=[records], help=f"{name} an app")
        p.add_argument("id", help="app id or name")
        if name == "rotate":
            p.add_argument(
                "--grace", type=float, default=0, help="seconds the old token keeps working"
            )
    for p in apps.choices.values():
        p.set_defaults(func=cmd_apps)

    rules = sub.add_parser("rules", help="rule files").add_subparsers(dest="action", required=True)
    check = rules.add_parser("check", parents=[records], help="validate a rules directory")
    check.add_argument("dir", nargs="?", help="rules directory (default rules.dir)")
    test = rules.add_parser("test", parents=[records], help="dry-run an event against the rules")
    test.add_argument("event", help="file with the event JSON")
    test.add_argument("--app", help="app name the event comes from")
    test.add_argument("--dir", help="rules directory (default rules.dir)")
    backtest = rules.add_parser(
        "backtest", parents=[records], help="match stored events against a rules directory"
    )
    backtest.add_argument("dir", nargs="?", help="rules directory (default rules.dir)")
    backtest.add_argument(
        "--since", required=True, help="window start: a duration back (7d, 1h) or RFC 3339"
    )
    backtest.add_argument("--until", help="window end: a duration back or RFC 3339 (default now)")
    backtest.add_argument("--app", help="only this app's events (name or id)")
    for p in rules.choices.values():
        p.set_defaults(func=cmd_rules)

    events = sub.add_parser("events", help="stored events").add_subparsers(
        dest="action", required=True
    )
    lst = events.add_parser("list", parents=[records], help="list events, newest first")
    lst.add_argument("--app-id", help="only this app's events (app id or name)")
    lst.add_argument("--event-type", help="only events of this type")
    lst.add_argument("--since", help="only events received since (RFC 3339 or epoch seconds)")
    lst.add_argument("--cursor", type=_cursor("evt_"), help="next page (as printed)")
    lst.add_argument("--limit", type=_page_limit, default=50, help="1-500 (default 50)")
    show = events.add_parser("show", parents=[records], help="one event (always JSON)")
    show.add_argument("id", help="event id")
    for p in events.choices.values():
        p.set_defaults(func=cmd_events)

    deliveries = sub.add_parser("deliveries", help="delivery log").add_subparsers(
        dest="action", required=True
    )
    lst = deliveries.add_parser("list", parents=[records], help="list deliveries, newest first")
    lst.add_argument(
        "--status",
        choices=("pending", "held", "succeeded", "failed", "skipped", "cancelled"),
        help="only this status (scheduled deliveries are pending)",
    )
    lst.add_argument("--target-id", help="only this webhook target's deliveries")
    lst.add_argument("--rule-id", help="only this rule's deliveries")
    lst.add_argument("--event-id", help="only this event's deliveries")
    lst.add_argument("--since", help="only deliveries created since (RFC 3339 or epoch seconds)")
    lst.add_argument("--cursor", type=_cursor("dlv_"), help="next page (as printed)")
    lst.add_argument("--limit", type=_page_limit, default=50, help="1-500 (default 50)")
    show = deliveries.add_parser(
        "show", parents=[records], help="one delivery and its attempts (always JSON)"
    )
    show.add_argument("id", help="delivery id")
    retry = deliveries.add_parser("retry", parents=[common], help="send a delivery again now")
    retry.add_argument("id", help="delivery id")
    retry.add_argument(
        "--force", action="store_true", help="also re-send a delivery that already succeeded"
    )
    cancel = deliveries.add_parser(
        "cancel", parents=[common], help="cancel a scheduled or pending delivery"
    )
    cancel.add_argument("id", help="delivery id")
    recover = deliveries.add_parser(
        "recover", parents=[records], help="re-queue failed deliveries since a time"
    )
    recover.add_argument("--since", required=True, help="RFC 3339 time or epoch seconds")
    recover.add_argument("--target-id", help="only this webhook target's deliveries")
    for p in deliveries.choices.values():
        p.set_defaults(func=cmd_deliveries)

    worker = sub.add_parser("worker", parents=[common], help="run a delivery worker process")
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser(
        "migrate", parents=[common], help="apply the PostgreSQL schema migrations and exit"
    )
    migrate.set_defaults(func=cmd_migrate)

    listen = sub.add_parser("listen", parents=[common], help="local sink printing webhooks")
    listen.add_argument("port", type=int, help="port to listen on (127.0.0.1)")
    listen.add_argument("--secret", help="whsec_... secret to verify signatures with")
    listen.add_argument("--status", type=int, default=200, help="status to answer with")
    listen.add_argument(
        "--headers",
        choices=("webhook", "all"),
        default="webhook",
        help="webhook: content type, user agent and signature headers (default); all: every one",
    )
    listen.set_defaults(func=cmd_listen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        server: dict[str, Any] = {}
        if getattr(args, "host", None):
            server["host"] = args.host
        if getattr(args, "port", None) is not None and args.command == "serve":
            server["port"] = args.port
        settings = load_settings(getattr(args, "config", None), server=server)
        return int(args.func(args, settings))
    except InvalidInput as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 2
    except HookgateError as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

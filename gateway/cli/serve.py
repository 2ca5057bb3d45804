"""Serving: `hookgate serve`, `worker` and `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.cli.common import (
    Parents,
    Subparsers,
)
from gateway.config import Settings
from gateway.errors import ConfigError

SWITCH_INTERVAL = 0.0005


# serve
def _rule_errors_at_start(settings: Settings) -> int | None:
    """Exit status 2 after printing every rule error, before anything is bound; None if
    the rules load. A running gateway keeps its last good set on a bad reload, but at a cold
    start there is none: serving with no rules would accept events and trigger nothing."""
    from gateway.rulesets.state import load_rule_files
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
    from gateway.http.serving import ListenError, listen, serve
    from gateway.limits.redis_preflight import check_redis
    from gateway.observability.logs import configure_logging
    from gateway.runtime import admin_token_path, ensure_admin_token

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
    from gateway.delivery.worker import main as worker_main
    from gateway.limits.redis_preflight import check_redis

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
    from gateway.store.postgres.store import run_migrations

    applied, version = asyncio.run(run_migrations(settings.storage.postgres_url))
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema at version {version}")
    else:
        print(f"schema up to date at version {version}")
    return 0


def add_commands(sub: Subparsers, parents: Parents) -> None:
    serve = sub.add_parser("serve", parents=[parents.common], help="run the gateway")
    serve.add_argument("--host", help="address to listen on (default server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default server.port)")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser(
        "worker", parents=[parents.common], help="run a delivery worker process"
    )
    worker.set_defaults(func=cmd_worker)
    migrate = sub.add_parser(
        "migrate", parents=[parents.common], help="apply the PostgreSQL schema migrations and exit"
    )
    migrate.set_defaults(func=cmd_migrate)

"""`hookgate apps`: create, list, show, update, rotate, enable, disable, delete."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from gateway.cli.common import (
    Parents,
    Subparsers,
    print_json,
    table,
    with_store,
)
from gateway.config import Settings
from gateway.http.served_url import with_served_url
from gateway.http.signatures import SCHEMES as SIGNATURE_SCHEMES
from gateway.records import apps as app_records
from gateway.store import Store


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
                print_json(record)
            else:
                print(f"created app {app.name} ({app.id})")
                print(f"event URL (shown once): {record['event_url']}")
                print(f"token: {token}")
            return 0
        if args.action == "list":
            apps = await store.list_apps()
            if args.json:
                print_json([app_records.app_json(a, settings) for a in apps])
            else:
                table(
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
            print_json(app_records.app_json(app, settings))
        elif args.action == "rotate":
            app, token = await app_records.rotate_token(store, app, args.grace)
            record = app_records.app_json(app, with_served_url(settings), token)
            if args.json:
                print_json(record)
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
                print_json(app_records.app_json(app, settings))
            else:
                print(f"updated app {app.name} ({', '.join(sorted(changes))})")
        elif args.action in ("disable", "enable"):
            app = await app_records.update_app(store, app, {"enabled": args.action == "enable"})
            if args.json:
                print_json(app_records.app_json(app, settings))
            else:
                print(f"app {app.name} {'enabled' if app.enabled else 'disabled'}")
        elif args.action == "delete":
            await store.delete_app(app.id)
            if args.json:
                print_json({"deleted": True, "id": app.id, "name": app.name})
            else:
                print(f"deleted app {app.name} ({app.id})")
        return 0

    return with_store(settings, run)


def add_commands(sub: Subparsers, parents: Parents) -> None:
    apps = sub.add_parser("apps", help="integration apps").add_subparsers(
        dest="action", required=True
    )
    create = apps.add_parser(
        "create", parents=[parents.records], help="create an app; prints its URL"
    )
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
    apps.add_parser("list", parents=[parents.records], help="list apps")
    update = apps.add_parser("update", parents=[parents.records], help="change an app's settings")
    update.add_argument("id", help="app id or name")
    update.add_argument("--rate", type=float, help="events per second")
    update.add_argument("--burst", type=int, help="bucket size")
    update.add_argument("--signing-secret", help="new secret for inbound signatures")
    update.add_argument(
        "--signature-scheme", choices=SIGNATURE_SCHEMES, help="how senders sign requests"
    )
    for name in ("show", "rotate", "disable", "enable", "delete"):
        p = apps.add_parser(name, parents=[parents.records], help=f"{name} an app")
        p.add_argument("id", help="app id or name")
        if name == "rotate":
            p.add_argument(
                "--grace", type=float, default=0, help="seconds the old token keeps working"
            )
    for p in apps.choices.values():
        p.set_defaults(func=cmd_apps)

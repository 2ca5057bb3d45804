"""`hookgate events`: list and show stored events."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import (
    Parents,
    Subparsers,
    cursor,
    page_limit,
    print_json,
    table,
    with_store,
)
from gateway.config import Settings
from gateway.records.shapes import event_json
from gateway.store import Store


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.http.admin_io import parse_time

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
                print_json(
                    {"data": [event_json(e) for e in page.data], "next_cursor": page.next_cursor}
                )
            else:
                table(
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
        print_json(event_json(event, await store.deliveries_for_event(event.id)))
        return 0

    return with_store(settings, run)


def add_commands(sub: Subparsers, parents: Parents) -> None:
    events = sub.add_parser("events", help="stored events").add_subparsers(
        dest="action", required=True
    )
    lst = events.add_parser("list", parents=[parents.records], help="list events, newest first")
    lst.add_argument("--app-id", help="only this app's events (app id or name)")
    lst.add_argument("--event-type", help="only events of this type")
    lst.add_argument("--since", help="only events received since (RFC 3339 or epoch seconds)")
    lst.add_argument("--cursor", type=cursor("evt_"), help="next page (as printed)")
    lst.add_argument("--limit", type=page_limit, default=50, help="1-500 (default 50)")
    show = events.add_parser("show", parents=[parents.records], help="one event (always JSON)")
    show.add_argument("id", help="event id")
    for p in events.choices.values():
        p.set_defaults(func=cmd_events)

"""`hookgate deliveries`: list, show, retry, cancel and recover deliveries."""

from __future__ import annotations

import argparse
import sys
import time

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
from gateway.records.shapes import delivery_json, shown_status
from gateway.store import DeliveryFilter, Store


# deliveries
def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.http.admin_io import parse_time, required_time

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
                print_json(
                    {
                        "data": [delivery_json(d, attempts=False) for d in page.data],
                        "next_cursor": page.next_cursor,
                    }
                )
            else:
                table(
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
                print_json({"requeued": count, "delivery_ids": ids})
            else:
                print(f"requeued {count} failed deliveries")
            return 0
        delivery = await store.get_delivery(args.id)
        if delivery is None:
            print(f"hookgate: no delivery {args.id!r}", file=sys.stderr)
            return 1
        if args.action == "show":
            print_json(delivery_json(delivery))
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

    return with_store(settings, run)


def add_commands(sub: Subparsers, parents: Parents) -> None:
    deliveries = sub.add_parser("deliveries", help="delivery log").add_subparsers(
        dest="action", required=True
    )
    lst = deliveries.add_parser(
        "list", parents=[parents.records], help="list deliveries, newest first"
    )
    lst.add_argument(
        "--status",
        choices=("pending", "held", "succeeded", "failed", "skipped", "cancelled"),
        help="only this status (scheduled deliveries are pending)",
    )
    lst.add_argument("--target-id", help="only this webhook target's deliveries")
    lst.add_argument("--rule-id", help="only this rule's deliveries")
    lst.add_argument("--event-id", help="only this event's deliveries")
    lst.add_argument("--since", help="only deliveries created since (RFC 3339 or epoch seconds)")
    lst.add_argument("--cursor", type=cursor("dlv_"), help="next page (as printed)")
    lst.add_argument("--limit", type=page_limit, default=50, help="1-500 (default 50)")
    show = deliveries.add_parser(
        "show", parents=[parents.records], help="one delivery and its attempts (always JSON)"
    )
    show.add_argument("id", help="delivery id")
    retry = deliveries.add_parser(
        "retry", parents=[parents.common], help="send a delivery again now"
    )
    retry.add_argument("id", help="delivery id")
    retry.add_argument(
        "--force", action="store_true", help="also re-send a delivery that already succeeded"
    )
    cancel = deliveries.add_parser(
        "cancel", parents=[parents.common], help="cancel a scheduled or pending delivery"
    )
    cancel.add_argument("id", help="delivery id")
    recover = deliveries.add_parser(
        "recover", parents=[parents.records], help="re-queue failed deliveries since a time"
    )
    recover.add_argument("--since", required=True, help="RFC 3339 time or epoch seconds")
    recover.add_argument("--target-id", help="only this webhook target's deliveries")
    for p in deliveries.choices.values():
        p.set_defaults(func=cmd_deliveries)

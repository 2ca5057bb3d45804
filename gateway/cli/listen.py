"""`hookgate listen`: a local sink that prints the webhooks it receives."""

from __future__ import annotations

import argparse

from gateway.cli.common import (
    Parents,
    Subparsers,
)
from gateway.config import Settings


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from actions import run_listen

    run_listen(args.port, secret=args.secret, status=args.status, all_headers=args.headers == "all")
    return 0


def add_commands(sub: Subparsers, parents: Parents) -> None:
    listen = sub.add_parser("listen", parents=[parents.common], help="local sink printing webhooks")
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

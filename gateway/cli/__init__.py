"""`hookgate`: serve the gateway and do every operator task from the shell (docs/design.md §8-9).

Commands that touch records open the configured store directly, so they work with the
server running or stopped; a running server notices app changes within a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gateway.cli import apps, deliveries, events, listen, rules, serve
from gateway.cli.common import Parents
from gateway.config import load_settings
from gateway.errors import InvalidInput
from gateway.version import __version__
from rules import HookgateError

__all__ = ["build_parser", "main"]

# Each command group is a module with `add_commands`; `hookgate --help` lists them in this order.
GROUPS = (serve, apps, rules, events, deliveries, listen)


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
    for group in GROUPS:
        group.add_commands(sub, Parents(common, records))
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

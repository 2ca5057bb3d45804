"""What every command module shares: printing records, opening the store, parsing
`--limit` and `--cursor` as the API does."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import orjson

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.ids import is_id
from gateway.store import Store, build_store

T = TypeVar("T")
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True)
class Parents:
    """The parent parsers commands share: `--config` on all, `--json` on those printing records."""

    common: argparse.ArgumentParser
    records: argparse.ArgumentParser


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
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


def page_limit(value: str) -> int:
    """`--limit`: records per page, 1-500 as in the API (the store cannot page by 0)."""
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {value!r}") from None
    if not 1 <= limit <= 500:
        raise argparse.ArgumentTypeError(f"must be between 1 and 500, not {limit}")
    return limit


def cursor(prefix: str) -> Callable[[str], str]:
    """`--cursor`: a `next_cursor` the list printed, refused otherwise (as the API does)."""

    def parse(value: str) -> str:
        if not is_id(value, prefix):
            raise argparse.ArgumentTypeError(f"not a cursor this list printed: {value!r}")
        return value

    return parse

"""Versioned migrations of the PostgreSQL store, and the statements it runs.

Migrations are the numbered files `sql/migrations/NNNN_*.sql`; the table
`schema_version` records each one applied. `migrate` applies the missing ones in order, each
in its own transaction, under an advisory lock (several gateways starting at once apply each
migration once), and refuses a database whose schema is newer than this code knows: an
older gateway must not write rows a newer schema no longer means.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import asyncpg

from gateway.errors import StoreError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _sql_dir() -> resources.abc.Traversable:
    return resources.files("gateway.store.postgres").joinpath("sql")


@functools.cache
def migrations() -> tuple[tuple[int, str], ...]:
    """(version, SQL) of every migration this code ships, in order."""
    found = []
    for entry in _sql_dir().joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1][0]


@functools.cache
def queries() -> dict[str, str]:
    """The named statements of `sql/queries.sql`."""
    text = _sql_dir().joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the missing migrations; answer the versions applied (none: up to date)."""
    lock = "SELECT hashtext(coalesce(current_schema(), '') || '.hookgate migrations')"
    key = await conn.fetchval(lock)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await current_version(conn)
        latest = latest_version()
        if current > latest:
            raise StoreError(
                f"the PostgreSQL schema is at version {current}, newer than this hookgate"
                f" knows (up to {latest}): run a hookgate at least as new as the one that"
                " migrated it"
            )
        applied = []
        for version, sql in migrations():
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)

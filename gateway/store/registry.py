"""The one list of store backends: name -> factory. `storage.backend` is validated against
it and `build_store` builds from it, so a new backend is one entry here (and its module).

Factories import their backend lazily: a gateway on SQLite never imports asyncpg.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.store.base import Store


def db_path(settings: Settings) -> str:
    """The SQLite database file under the data directory."""
    return str(settings.data_dir / "hookgate.db")


def _sqlite(settings: Settings) -> Store:
    from gateway.store.sqlite.store import SqliteStore

    return SqliteStore(
        db_path(settings),
        synchronous=settings.storage.synchronous,
        idempotency_ttl=settings.ingest.idempotency_ttl_seconds,
        restart_backoff_max=settings.server.restart_backoff_max_seconds,
    )


def _redis(settings: Settings) -> Store:
    from gateway.store.redis.store import RedisStore

    return RedisStore(
        settings.redis.url,
        key_prefix=settings.redis.key_prefix,
        idempotency_ttl=settings.ingest.idempotency_ttl_seconds,
    )


def _postgres(settings: Settings) -> Store:
    from gateway.store.postgres.store import PostgresStore

    return PostgresStore(
        settings.storage.postgres_url, idempotency_ttl=settings.ingest.idempotency_ttl_seconds
    )


def _memory(settings: Settings) -> Store:
    from gateway.store.memory import MemoryStore

    return MemoryStore(idempotency_ttl=settings.ingest.idempotency_ttl_seconds)


BACKENDS: dict[str, Callable[[Settings], Store]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "postgres": _postgres,
    "memory": _memory,
}

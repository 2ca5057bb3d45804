"""Storage backends behind one protocol; `build_store` is the only place that picks one."""

from __future__ import annotations

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.store.base import Accepted, DeliveryFilter, Page, Store

__all__ = ["Accepted", "DeliveryFilter", "Page", "Store", "build_store", "db_path"]


def db_path(settings: Settings) -> str:
    return str(settings.data_dir / "hookgate.db")


def build_store(settings: Settings) -> Store:
    """The configured backend, not yet opened."""
    backend = settings.storage.backend
    if backend == "sqlite":
        from gateway.store.sqlite.store import SqliteStore

        return SqliteStore(
            db_path(settings),
            synchronous=settings.storage.synchronous,
            idempotency_ttl=settings.ingest.idempotency_ttl_seconds,
            restart_backoff_max=settings.server.restart_backoff_max_seconds,
        )
    if backend == "redis":
        from gateway.store.redis.store import RedisStore

        return RedisStore(
            settings.redis.url,
            key_prefix=settings.redis.key_prefix,
            idempotency_ttl=settings.ingest.idempotency_ttl_seconds,
        )
    if backend == "postgres":
        from gateway.store.postgres.store import PostgresStore

        return PostgresStore(
            settings.storage.postgres_url,
            idempotency_ttl=settings.ingest.idempotency_ttl_seconds,
        )
    if backend == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore(idempotency_ttl=settings.ingest.idempotency_ttl_seconds)
    raise ConfigError(f"storage.backend {backend!r} is not available")

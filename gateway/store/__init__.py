"""Storage backends behind one protocol; `build_store` picks one from `registry.BACKENDS`."""

from __future__ import annotations

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.store.base import Accepted, DeliveryFilter, Page, Store
from gateway.store.registry import BACKENDS, db_path

__all__ = ["Accepted", "DeliveryFilter", "Page", "Store", "build_store", "db_path"]


def build_store(settings: Settings) -> Store:
    """The configured backend, not yet opened."""
    factory = BACKENDS.get(settings.storage.backend)
    if factory is None:
        raise ConfigError(f"storage.backend {settings.storage.backend!r} is not available")
    return factory(settings)

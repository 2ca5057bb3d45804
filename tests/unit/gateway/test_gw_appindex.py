"""The in-memory app index the ingest path reads instead of the store."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.http.appindex import AppIndex
from gateway.http.signatures import RefuseAll
from gateway.models import App
from gateway.store.memory import MemoryStore


def _app(app_id: str, name: str, **fields: object) -> App:
    return App(id=app_id, name=name, token_hash=f"hash-{app_id}", **fields)  # type: ignore[arg-type]


@pytest.fixture
async def store() -> MemoryStore:
    memory = MemoryStore()
    await memory.open()
    return memory


async def test_refresh_builds_once_per_store_change(store: MemoryStore) -> None:
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await store.create_app(_app("app_1", "crm"))
    assert await index.refresh() is True
    assert await index.refresh() is False  # nothing changed
    await store.create_app(_app("app_2", "pay"))
    assert await index.refresh() is True
    assert set(index.by_id) == {"app_1", "app_2"}
    assert await index.refresh(force=True) is True


async def test_defaults_apply_unless_the_app_sets_its_own_limits(store: MemoryStore) -> None:
    await store.create_app(_app("app_1", "crm"))
    await store.create_app(_app("app_2", "pay", rate=2.5, burst=4))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await index.refresh()
    first, second = index.lookup("hash-app_1"), index.lookup("hash-app_2")
    assert first is not None and (first.rate, first.burst) == (10.0, 20)
    assert second is not None and (second.rate, second.burst) == (2.5, 4)


async def test_a_disabled_app_and_an_unknown_hash_are_not_found(store: MemoryStore) -> None:
    await store.create_app(_app("app_1", "crm", enabled=False))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await index.refresh()
    assert index.lookup("hash-app_1") is None
    assert index.lookup("no-such-hash") is None


async def test_the_previous_token_works_only_within_its_grace(store: MemoryStore) -> None:
    now = time.time()
    await store.create_app(
        _app("app_1", "crm", previous_token_hash="old-1", previous_token_expires_at=now + 60)
    )
    await store.create_app(
        _app("app_2", "pay", previous_token_hash="old-2", previous_token_expires_at=now - 1)
    )
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await index.refresh()
    grace = index.lookup("old-1")
    assert grace is not None and grace.app.id == "app_1"
    assert index.lookup("old-2") is None
    assert index.lookup("hash-app_2") is not None


async def test_a_schema_is_compiled_once_and_validates(store: MemoryStore) -> None:
    schema = {"type": "object", "required": ["job_id"]}
    await store.create_app(_app("app_1", "crm", schema=schema))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await index.refresh()
    entry = index.lookup("hash-app_1")
    assert entry is not None and entry.validator is not None
    entry.validator({"job_id": 1})
    with pytest.raises(ValueError):
        entry.validator({})


async def test_a_stored_schema_that_does_not_compile_is_ignored_loudly(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create_app(_app("app_1", "crm", schema={"type": "no-such-type"}))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    with caplog.at_level(logging.ERROR, logger="hookgate.apps"):
        await index.refresh()
    entry = index.lookup("hash-app_1")
    assert entry is not None and entry.validator is None
    assert "does not compile" in caplog.text


async def test_an_unusable_signing_secret_fails_closed_without_logging_it(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "whsec_notbase64!!"
    await store.create_app(_app("app_1", "crm", signing_secret=secret))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    with caplog.at_level(logging.ERROR, logger="hookgate.apps"):
        await index.refresh()
    entry = index.lookup("hash-app_1")
    assert entry is not None and isinstance(entry.verifier, RefuseAll)
    assert "refusing its events" in caplog.text
    assert secret not in caplog.text


async def test_an_app_without_a_secret_has_no_verifier(store: MemoryStore) -> None:
    await store.create_app(_app("app_1", "crm"))
    index = AppIndex(store, default_rate=10.0, default_burst=20)
    await index.refresh()
    entry = index.lookup("hash-app_1")
    assert entry is not None and entry.verifier is None

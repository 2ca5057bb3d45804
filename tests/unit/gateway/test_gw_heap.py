"""A gateway that owns its process (`hookgate serve`) freezes its long-lived heap after
start and after every rule reload, so full collections stop walking the rule set; a
gateway embedded in another process (these tests, an embedding) leaves `gc` alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.runtime import Gateway
from gateway.store.memory import MemoryStore

RULE = """
[[rules]]
id = "{rule_id}"
event_types = ["order.created"]

  [[rules.actions]]
  type = "webhook"
  url = "http://127.0.0.1:9/{rule_id}"
"""


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # never leave this test process frozen


def _collectable(obj: object) -> bool:
    """Whether a full collection would walk `obj` (frozen objects are in no generation)."""
    return gc.is_tracked(obj) and any(o is obj for o in gc.get_objects())


def gateway(tmp_path: Path, *, freeze_heap: bool) -> Gateway:
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "a.toml").write_text(RULE.format(rule_id="first"))
    settings = load_settings(
        None,
        env={},
        server={"admin_token": "t"},
        storage={"backend": "memory", "data_dir": str(tmp_path / "data")},
        rules={"dir": str(rules_dir), "poll_seconds": 60},
        delivery={"workers": 0},
    )
    return Gateway(settings, store=MemoryStore(), freeze_heap=freeze_heap)


async def test_serve_freezes_the_heap_after_start_and_after_a_reload(tmp_path: Path) -> None:
    gw = gateway(tmp_path, freeze_heap=True)
    await gw.start()
    try:
        assert gc.get_freeze_count() > 0
        assert not _collectable(gw.rules.current)  # frozen: out of the collector's walk
        gc.unfreeze()
        assert _collectable(gw.rules.current)
        (tmp_path / "rules.d" / "b.toml").write_text(RULE.format(rule_id="second"))
        assert await gw.rules.reload() == ()
        assert len(gw.rules.current) == 2
        # The reload froze the heap again, the new rule set with it.
        assert gc.get_freeze_count() > 0
        assert not _collectable(gw.rules.current)
    finally:
        await gw.stop()


async def test_an_embedded_gateway_leaves_gc_alone(tmp_path: Path) -> None:
    gw = gateway(tmp_path, freeze_heap=False)
    await gw.start()
    try:
        assert await gw.rules.reload() == ()
        assert gc.get_freeze_count() == 0
    finally:
        await gw.stop()

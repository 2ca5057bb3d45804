"""The live rule set: reloads swap whole sets, failures keep the last good one, missing
directories, webhook targets beside file rules, and the mtime watch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.models import WebhookTarget
from gateway.observability.metrics import Metrics
from gateway.rulesets.state import RuleState
from gateway.runtime import Gateway
from gateway.store.memory import MemoryStore
from rules import DEFAULT_EVENT_TYPE_FIELDS, Logic, RuleSet

URL = "https://example.com/hook"


def rule_toml(rule_id: str, *, event_types: tuple[str, ...] = (), extra: str = "") -> str:
    types = ", ".join(f'"{t}"' for t in event_types)
    return (
        f'[[rules]]\nid = "{rule_id}"\nevent_types = [{types}]\n{extra}\n'
        f'[[rules.actions]]\ntype = "webhook"\nurl = "{URL}"\n'
    )


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def state(
    rules_dir: Path,
    *,
    store: MemoryStore | None = None,
    metrics: Metrics | None = None,
    **kwargs: Any,
) -> RuleState:
    return RuleState(
        rules_dir,
        store=store,
        logic=Logic(),
        event_type_fields=DEFAULT_EVENT_TYPE_FIELDS,
        metrics=metrics,
        **kwargs,
    )


def ids(rule_state: RuleState) -> list[str]:
    return [rule.id for rule in rule_state.current.rules]


async def eventually(predicate: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


# -- reload -----------------------------------------------------------------------------------


async def test_reload_swaps_in_every_file_of_the_directory(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    a = write(rules_dir, "a.toml", rule_toml("a1", event_types=("job_completed",)))
    b = write(rules_dir, "b.toml", rule_toml("b1") + rule_toml("b2"))
    rs = state(rules_dir)
    before = time.time()

    assert await rs.reload() == ()

    assert ids(rs) == ["a1", "b1", "b2"]
    assert [rule.source for rule in rs.current.rules] == [str(a), str(b), str(b)]
    assert rs.files == (str(a), str(b))
    assert rs.errors == ()
    assert rs.version == RuleSet(rs.current.rules).version == rs.file_version
    assert rs.loaded_at is not None and rs.loaded_at >= before
    assert [m.rule.id for m in rs.current.match("acme", {"event_type": "job_completed"})] == [
        "a1",
        "b1",
        "b2",
    ]


async def test_failed_reload_keeps_the_last_good_set_and_reports_every_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules_dir = tmp_path / "rules.d"
    write(rules_dir, "a.toml", rule_toml("a1"))
    metrics = Metrics()
    rs = state(rules_dir, metrics=metrics)
    await rs.reload()
    good, loaded_at = rs.current, rs.loaded_at

    write(rules_dir, "a.toml", rule_toml("a2", extra='when = { "no_such_op" = [1] }'))
    write(rules_dir, "b.toml", "[[rules]\nid = 'oops'\n")
    with caplog.at_level(logging.ERROR, logger="hookgate.rules"):
        errors = await rs.reload()

    assert [(e.file, e.rule_id) for e in errors] == [
        (str(rules_dir / "a.toml"), "a2"),
        (str(rules_dir / "b.toml"), None),
    ]
    assert "no_such_op" in errors[0].message
    assert errors[1].message.startswith("invalid TOML: ")
    assert rs.errors == errors
    assert rs.current is good and ids(rs) == ["a1"]
    assert rs.loaded_at == loaded_at
    assert rs.last_attempt_at is not None and loaded_at is not None
    assert rs.last_attempt_at >= loaded_at
    assert metrics.value("hookgate_rule_reload_errors_total") == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for error in errors:
        assert f"rule error: {error}" in logged
    assert "rule reload failed; keeping the previous rule set (2 errors)" in logged

    (rules_dir / "b.toml").unlink()
    write(rules_dir, "a.toml", rule_toml("a2"))
    assert await rs.reload() == ()
    assert rs.errors == ()
    assert ids(rs) == ["a2"]
    assert rs.version != good.version


async def test_reload_refuses_a_secret_env_that_cannot_sign_and_keeps_the_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rules_dir = tmp_path / "rules.d"
    signed = 'secret_env = "HG_RULESTATE_SECRET"'
    write(rules_dir, "a.toml", rule_toml("a1").replace('url = "', f'{signed}\nurl = "'))
    monkeypatch.setenv("HG_RULESTATE_SECRET", "whsec_c2VjcmV0")
    rs = state(rules_dir)
    assert await rs.reload() == ()
    good = rs.current

    monkeypatch.setenv("HG_RULESTATE_SECRET", "whsec_notbase64!!")
    with caplog.at_level(logging.ERROR, logger="hookgate.rules"):
        errors = await rs.reload()

    assert [str(e) for e in errors] == [
        f"{rules_dir / 'a.toml'}:a1: actions[0].secret_env: not a valid signing secret "
        "(expected whsec_<base64>)"
    ]
    assert rs.current is good
    assert "notbase64" not in caplog.text


async def test_on_reloaded_runs_after_each_successful_reload_only(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    write(rules_dir, "a.toml", rule_toml("a1"))
    calls: list[str] = []
    rs = state(rules_dir, on_reloaded=lambda: calls.append(rs.version))

    await rs.reload()
    assert calls == [rs.version]  # called after the swap: it sees the new set
    write(rules_dir, "a.toml", "not toml at all = = =")
    await rs.reload()
    assert len(calls) == 1
    write(rules_dir, "a.toml", rule_toml("a2"))
    await rs.reload()
    assert calls[-1] == rs.version and len(calls) == 2


async def test_same_content_gives_the_same_version(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    path = write(rules_dir, "a.toml", rule_toml("a1"))
    rs = state(rules_dir)
    await rs.reload()
    first = rs.version
    path.write_text(rule_toml("a1"), encoding="utf-8")
    await rs.reload()
    assert rs.version == first
    path.write_text(rule_toml("a1", event_types=("x",)), encoding="utf-8")
    await rs.reload()
    assert rs.version != first


# -- missing or wrong directory --------------------------------------------------------------


def gateway_for(rules_dir: str, tmp_path: Path) -> Gateway:
    settings = load_settings(
        None,
        env={},
        server={"admin_token": "t"},
        storage={"backend": "memory", "data_dir": str(tmp_path / "data")},
        rules={"dir": rules_dir},
    )
    return Gateway(settings, store=MemoryStore())


@pytest.mark.parametrize("configured", ["./rules.d", "rules.d"])
async def test_missing_default_directory_loads_no_rules_at_info(
    configured: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = gateway_for(configured, tmp_path)
    try:
        with caplog.at_level(logging.DEBUG, logger="hookgate.rules"):
            assert await gw.rules.reload() == ()
    finally:
        await gw.http.aclose()
    assert len(gw.rules.current) == 0
    assert gw.rules.errors == () and gw.rules.loaded_at is not None
    missing = [r for r in caplog.records if "does not exist" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in missing] == [
        (logging.INFO, "rules directory rules.d does not exist; no rules loaded")
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_missing_configured_directory_warns_and_loads_no_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configured = tmp_path / "typo.d"
    gw = gateway_for(str(configured), tmp_path)
    try:
        with caplog.at_level(logging.DEBUG, logger="hookgate.rules"):
            assert await gw.rules.reload() == ()
    finally:
        await gw.http.aclose()
    assert len(gw.rules.current) == 0
    assert gw.rules.errors == () and gw.rules.loaded_at is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"rules directory {configured} does not exist; no rules loaded"]


async def test_rules_path_that_is_a_file_is_an_error_and_keeps_the_set(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    write(rules_dir, "a.toml", rule_toml("a1"))
    rs = state(rules_dir)
    await rs.reload()
    for path in rules_dir.iterdir():
        path.unlink()
    rules_dir.rmdir()
    rules_dir.write_text("not a directory")

    errors = await rs.reload()

    assert [str(e) for e in errors] == [
        f"{rules_dir}:-: rules directory does not exist or is not a directory"
    ]
    assert ids(rs) == ["a1"]


# -- webhook targets --------------------------------------------------------------------------


def target(target_id: str, **fields: Any) -> WebhookTarget:
    return WebhookTarget(id=target_id, url=URL, secret="whsec_dGVzdA==", **fields)


async def test_target_rules_follow_file_rules_and_survive_file_reloads(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    write(rules_dir, "a.toml", rule_toml("a1"))
    store = MemoryStore()
    await store.create_target(target("tgt_1", events=("job_completed",)))
    await store.create_target(target("tgt_off", status="disabled"))
    rs = state(rules_dir, store=store)
    await rs.reload()
    files_only = rs.version

    assert await rs.refresh_targets(force=True) is True
    assert [(r.id, r.target_id) for r in rs.current.rules] == [
        ("a1", None),
        ("target:tgt_1", "tgt_1"),
    ]  # the disabled target makes no rule
    assert set(rs.targets) == {"tgt_1", "tgt_off"}
    assert rs.version != files_only
    assert await rs.refresh_targets() is False  # unchanged targets version: nothing to do

    write(rules_dir, "a.toml", rule_toml("a2"))
    await rs.reload()
    assert [r.id for r in rs.current.rules if r.target_id is None] == ["a2"]
    assert [r.target_id for r in rs.current.rules if r.target_id] == ["tgt_1"]


# -- the watch ----------------------------------------------------------------------------------


async def watch_until_target_seen(
    rs: RuleState, store: MemoryStore, reload_files: bool, change: Callable[[], None]
) -> None:
    """Run the watch, make a file change, then add a target: once the target shows, the
    watch has polled after the change (files are checked before targets in each round)."""
    task = asyncio.create_task(rs.watch(0.02, reload_files))
    try:
        change()
        await store.create_target(target("tgt_barrier"))

        async def target_seen() -> bool:
            return "tgt_barrier" in rs.targets

        await eventually(target_seen)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watch_reloads_when_a_file_changes(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    path = write(rules_dir, "a.toml", rule_toml("a1"))
    store = MemoryStore()
    rs = state(rules_dir, store=store)
    await rs.reload()

    await watch_until_target_seen(
        rs, store, True, lambda: path.write_text(rule_toml("a-renamed"), encoding="utf-8")
    )

    assert [r.id for r in rs.current.rules if r.target_id is None] == ["a-renamed"]


async def test_watch_picks_up_a_new_file_and_a_deleted_one(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    old = write(rules_dir, "a.toml", rule_toml("a1"))
    store = MemoryStore()
    rs = state(rules_dir, store=store)
    await rs.reload()

    def swap_files() -> None:
        write(rules_dir, "b.toml", rule_toml("b1"))
        old.unlink()

    await watch_until_target_seen(rs, store, True, swap_files)

    assert [r.id for r in rs.current.rules if r.target_id is None] == ["b1"]
    assert rs.files == (str(rules_dir / "b.toml"),)


async def test_watch_leaves_files_alone_when_file_reload_is_off(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    path = write(rules_dir, "a.toml", rule_toml("a1"))
    store = MemoryStore()
    rs = state(rules_dir, store=store)
    await rs.reload()
    attempted = rs.last_attempt_at

    await watch_until_target_seen(
        rs, store, False, lambda: path.write_text(rule_toml("a-renamed"), encoding="utf-8")
    )

    assert [r.id for r in rs.current.rules if r.target_id is None] == ["a1"]
    assert rs.last_attempt_at == attempted


async def test_watch_does_not_reload_an_unchanged_directory(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules.d"
    write(rules_dir, "a.toml", rule_toml("a1"))
    store = MemoryStore()
    rs = state(rules_dir, store=store)
    await rs.reload()
    attempted = rs.last_attempt_at

    await watch_until_target_seen(rs, store, True, lambda: None)

    assert rs.last_attempt_at == attempted

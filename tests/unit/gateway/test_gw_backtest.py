"""gateway.rulesets.backtest over every store backend: window, app filter, paging, samples, bodies;
and the parsing of `since`/`until`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import InvalidInput
from gateway.ids import hash_token, new_token, sortable_id
from gateway.models import App, Event
from gateway.rulesets.backtest import backtest, parse_moment
from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis.store import RedisStore
from gateway.store.sqlite.store import SqliteStore
from rules import Rule, RuleSet, Template
from rules.model import Action

T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    else:
        redis = request.getfixturevalue("redis_url")
        backend = RedisStore(redis["url"], key_prefix=redis["prefix"])
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def _ruleset() -> RuleSet:
    body = Template.compile({"n": {"var": "n"}})
    action = Action(type="webhook", url="https://x.example/h", body=body)
    return RuleSet(
        [
            Rule(
                id="odd",
                event_types=frozenset({"t"}),
                when={"%": [{"var": "n"}, 2]},
                actions=(action,),
            ),
            Rule(id="shop", apps=frozenset({"shop"}), actions=(action,)),
        ]
    )


async def _seed(store: Store) -> dict[str, list[str]]:
    shop = App(id=sortable_id("app_"), name="shop", token_hash=hash_token(new_token()))
    crm = App(id=sortable_id("app_"), name="crm", token_hash=hash_token(new_token()))
    await store.create_app(shop)
    await store.create_app(crm)
    ids: dict[str, list[str]] = {"shop": [], "crm": []}
    for n in range(12):
        app = shop if n % 3 == 0 else crm
        at = T0 + n
        payload = b"not json" if n == 11 else f'{{"n": {n}}}'.encode()
        event = Event(sortable_id("evt_", at), app.id, "t", at, payload)
        await store.add_event(event, [])
        ids[app.name].append(event.id)
    return ids


async def test_backtest_counts_every_page_inside_the_window(store: Store) -> None:
    ids = await _seed(store)
    report = await backtest(store, _ruleset(), since=T0 + 1, until=T0 + 11, page=2)
    tallies = {t.rule_id: t for t in report.rules}
    # Events 1..10: odd n are 1, 3, 5, 7, 9; shop's are 3, 6, 9.
    assert (report.events, report.unreadable) == (10, 0)
    assert tallies["odd"].matched == 5
    assert tallies["shop"].matched == 3
    assert tallies["shop"].sample_event_ids == ids["shop"][1:][::-1]
    assert tallies["odd"].sample_body == {"n": 9}
    assert tallies["shop"].sample_body == {"n": 9}


async def test_backtest_app_filter_samples_and_unreadable_payloads(store: Store) -> None:
    await _seed(store)
    apps = {a.name: a.id for a in await store.list_apps()}
    report = await backtest(store, _ruleset(), since=T0, app_id=apps["crm"], page=3)
    odd = next(t for t in report.rules if t.rule_id == "odd")
    # crm's events: n in 1,2,4,5,7,8,10,11; 11 is not JSON; odd ones 1,5,7 -> 3.
    assert (report.events, report.unreadable, report.app) == (8, 1, "crm")
    assert odd.matched == 3 and len(odd.sample_event_ids) == 3
    assert odd.content()["sample_body"] == {"n": 7}


async def test_backtest_samples_events_of_one_millisecond_newest_first(store: Store) -> None:
    crm = App(id=sortable_id("app_"), name="crm", token_hash=hash_token(new_token()))
    await store.create_app(crm)
    at = T0 + 20.0007
    ids = []
    for n in range(1, 16, 2):  # 8 odd events, all received within one millisecond
        event = Event(sortable_id("evt_", at), crm.id, "t", at, f'{{"n": {n}}}'.encode())
        await store.add_event(event, [])
        ids.append(event.id)
    report = await backtest(store, _ruleset(), since=T0, page=3)
    odd = next(t for t in report.rules if t.rule_id == "odd")
    assert odd.matched == 8
    assert odd.sample_event_ids == ids[::-1][:5]
    assert odd.sample_body == {"n": 15}  # the newest event's body


def test_parse_moment_takes_durations_and_rfc3339() -> None:
    assert parse_moment("7d", "since", 1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_moment("90s", "since", 100.0) == 10.0
    assert parse_moment("2023-11-14T22:13:20Z", "since", 0) == T0
    assert parse_moment("2023-11-15T00:13:20+02:00", "until", 0) == T0
    for bad in ("", "soon", "2023-11-14T22:13:20", "-1h"):
        with pytest.raises(InvalidInput) as caught:
            parse_moment(bad, "until", 0)
        assert caught.value.field == "until"

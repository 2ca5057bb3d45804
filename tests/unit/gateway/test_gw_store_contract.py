"""The `Store` contract: every backend passes the same tests (memory, SQLite, Redis, PostgreSQL).

Each test runs once per backend in `BACKENDS` on a freshly opened store (Redis: the test
Redis under a key prefix of the test's own, deleted afterwards); the SQLite-only tests at
the end cover what only a file-backed backend has (group commit, reopening the file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from actions import plan_deliveries
from actions.ids import delivery_id, id_floor
from actions.model import Attempt, Delivery, Lease, RateLimit
from gateway.delivery.cancel_on import CancelIndex, cancel_superseded
from gateway.errors import StoreError
from gateway.ids import hash_token, new_token, sortable_id
from gateway.limits import keys
from gateway.models import App, Event, WebhookTarget
from gateway.store import DeliveryFilter, Store
from gateway.store.base import Page
from gateway.store.memory import MemoryStore
from gateway.store.postgres.store import PostgresStore
from gateway.store.redis.store import RedisStore
from gateway.store.sqlite import rows as sqlite_rows
from gateway.store.sqlite import store as sqlite_store
from gateway.store.sqlite import writer as sqlite_writer
from gateway.store.sqlite.store import SqliteStore
from rules import RuleSet, load_file

T0 = 1_700_000_000.0  # a fixed epoch second; every record time in these tests is T0 + n
TOKEN = "holder-1"  # the lease token of the one holder most tests play


def held(until: float, token: str = TOKEN) -> Lease:
    return Lease(token, until)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda request, tmp: MemoryStore(),
    "sqlite": lambda request, tmp: SqliteStore(tmp / "store" / "hookgate.db", synchronous="normal"),
    "redis": lambda request, tmp: RedisStore(
        request.getfixturevalue("redis_url")["url"],
        key_prefix=request.getfixturevalue("redis_url")["prefix"],
    ),
    "postgres": lambda request, tmp: PostgresStore(
        request.getfixturevalue("postgres_url")["url"],
        schema_name=request.getfixturevalue("postgres_url")["schema"],
    ),
}
NEEDS_REDIS = {"redis"}
NEEDS_POSTGRES = {"postgres"}


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.redis)
        if name in NEEDS_REDIS
        else pytest.param(name, marks=pytest.mark.postgres)
        if name in NEEDS_POSTGRES
        else name
        for name in sorted(BACKENDS)
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = BACKENDS[request.param](request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def make_app(name: str, **fields: Any) -> App:
    return App(
        id=fields.pop("id", None) or sortable_id("app_"),
        name=name,
        token_hash=hash_token(new_token()),
        **fields,
    )


def make_event(
    app_id: str,
    at: float,
    *,
    event_type: str | None = "order.created",
    key: str | None = None,
    **fields: Any,
) -> Event:
    return Event(
        id=sortable_id("evt_", at),
        app_id=app_id,
        event_type=event_type,
        received_at=at,
        payload=fields.pop("payload", b'{"n": 1}'),
        idempotency_key=key,
        **fields,
    )


def make_delivery(event_id: str, at: float, **fields: Any) -> Delivery:
    return Delivery(
        id=fields.pop("id", None) or delivery_id(at),
        event_id=event_id,
        action_type=fields.pop("action_type", "webhook"),
        url=fields.pop("url", "http://127.0.0.1:9/hook"),
        created_at=at,
        next_attempt_at=fields.pop("next_attempt_at", at),
        **fields,
    )


def make_target(at: float, **fields: Any) -> WebhookTarget:
    return WebhookTarget(
        id=fields.pop("id", None) or sortable_id("wht_", at),
        url=fields.pop("url", "http://127.0.0.1:9/target"),
        secret=fields.pop("secret", "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1zdG9yZQ=="),
        created_at=at,
        updated_at=at,
        **fields,
    )


def attempt(at: float, status_code: int | None, **fields: Any) -> Attempt:
    return Attempt(
        at=at,
        status_code=status_code,
        latency_ms=fields.pop("latency_ms", 12.5),
        error=fields.pop("error", None),
        response_excerpt=fields.pop("response_excerpt", "ok"),
        **fields,
    )


async def add_with_delivery(store: Store, app_id: str, at: float, **fields: Any) -> Delivery:
    event = make_event(app_id, at)
    delivery = make_delivery(event.id, at, **fields)
    await store.add_event(event, [delivery])
    return delivery


# apps


async def test_created_apps_read_back_with_every_field(store: Store) -> None:
    full = make_app(
        "billing",
        enabled=False,
        rate=2.5,
        burst=7,
        schema={"type": "object", "required": ["id"]},
        signing_secret="whsec_c2lnbmluZw==",
        created_at=T0,
        updated_at=T0 + 1,
        previous_token_hash=hash_token("old"),
        previous_token_expires_at=T0 + 60,
        signature_scheme="stripe",
    )
    plain = make_app("shop", created_at=T0 + 2)
    await store.create_app(full)
    await store.create_app(plain)

    assert await store.get_app(full.id) == full
    assert await store.get_app(plain.id) == plain
    assert await store.get_app("app_missing") is None
    assert await store.list_apps() == sorted([full, plain], key=lambda a: a.id)


async def test_signature_scheme_survives_save(store: Store) -> None:
    app = make_app("gh", signing_secret="s", signature_scheme="github")
    await store.create_app(app)
    changed = dataclasses.replace(app, signature_scheme="slack")
    await store.save_app(changed)
    assert await store.get_app(app.id) == changed


async def test_sqlite_database_from_before_signature_scheme_keeps_working(
    tmp_path: Path,
) -> None:
    """An apps table without the column gets it on open; old apps read as standard-webhooks."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE apps (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL, rate REAL, burst INTEGER, schema TEXT, signing_secret TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    previous_token_hash TEXT, previous_token_expires_at REAL
);
INSERT INTO apps VALUES ('app_old', 'old', 'h', 1, NULL, NULL, NULL, 'whsec_c2lnbmluZw==',
    1.0, 1.0, NULL, NULL);"""
    )
    conn.close()
    store = SqliteStore(path, synchronous="normal")
    await store.open()
    try:
        old = await store.get_app("app_old")
        assert old is not None
        assert old.signature_scheme == "standard-webhooks"
        assert old.signing_secret == "whsec_c2lnbmluZw=="
        await store.save_app(dataclasses.replace(old, signature_scheme="shopify"))
        again = await store.get_app("app_old")
        assert again is not None and again.signature_scheme == "shopify"
    finally:
        await store.close()
    # and opening it a second time (column present) changes nothing
    store = SqliteStore(path, synchronous="normal")
    await store.open()
    try:
        again = await store.get_app("app_old")
        assert again is not None and again.signature_scheme == "shopify"
    finally:
        await store.close()


async def test_find_app_by_id_or_by_name(store: Store) -> None:
    app = make_app("billing")
    await store.create_app(app)
    assert await store.find_app(app.id) == app
    assert await store.find_app("billing") == app
    assert await store.find_app("nobody") is None


async def test_find_app_prefers_an_id_to_a_name(store: Store) -> None:
    first = make_app("billing")
    impostor = make_app(first.id)  # named like the other app's id
    await store.create_app(first)
    await store.create_app(impostor)
    assert await store.find_app(first.id) == first
    assert await store.find_app(impostor.id) == impostor


async def test_an_app_name_is_taken_once(store: Store) -> None:
    first = make_app("billing")
    await store.create_app(first)
    with pytest.raises(StoreError):
        await store.create_app(make_app("billing"))
    assert await store.list_apps() == [first]


async def test_saving_an_app_under_a_taken_name_fails_and_keeps_the_other_app(
    store: Store,
) -> None:
    first, second = make_app("billing"), make_app("shop")
    await store.create_app(first)
    await store.create_app(second)
    with pytest.raises(StoreError):
        await store.save_app(dataclasses.replace(second, name="billing"))
    assert await store.get_app(first.id) == first
    assert await store.get_app(second.id) == second


async def test_save_app_updates_in_place(store: Store) -> None:
    app = make_app("billing")
    await store.create_app(app)
    renamed = dataclasses.replace(app, name="invoices", enabled=False, rate=1.0, burst=2)
    await store.save_app(renamed)
    assert await store.get_app(app.id) == renamed
    assert await store.find_app("invoices") == renamed
    assert await store.find_app("billing") is None
    assert await store.list_apps() == [renamed]


async def test_delete_app(store: Store) -> None:
    app = make_app("billing")
    await store.create_app(app)
    assert await store.delete_app(app.id) is True
    assert await store.get_app(app.id) is None
    assert await store.delete_app(app.id) is False
    assert await store.list_apps() == []


async def test_apps_version_changes_on_every_change_and_only_then(store: Store) -> None:
    seen = [await store.apps_version()]
    app = make_app("billing")
    await store.create_app(app)
    seen.append(await store.apps_version())
    await store.save_app(dataclasses.replace(app, enabled=False))
    seen.append(await store.apps_version())
    other = make_app("shop")
    await store.create_app(other)
    seen.append(await store.apps_version())
    await store.delete_app(other.id)
    seen.append(await store.apps_version())
    assert len(set(seen)) == len(seen), seen

    with pytest.raises(StoreError):
        await store.create_app(make_app("billing"))
    await store.delete_app("app_missing")
    assert await store.apps_version() == seen[-1]


# events


async def test_add_event_without_deliveries(store: Store) -> None:
    event = make_event(
        "app_1",
        T0,
        payload=b'{"b": 2,  "a": "\xc3\xa9"}',
        headers={"content-type": "application/json", "user-agent": "curl"},
        matched_rules=("r1", "r2"),
    )
    accepted = await store.add_event(event, [])
    assert (accepted.event_id, accepted.duplicate) == (event.id, False)
    assert await store.get_event(event.id) == event
    assert await store.get_event("evt_missing") is None
    assert await store.deliveries_for_event(event.id) == []
    assert await store.count_events() == 1
    assert await store.count_pending() == 0


async def test_add_event_commits_its_deliveries_with_it(store: Store) -> None:
    event = make_event("app_1", T0)
    rendered = make_delivery(
        event.id,
        T0,
        id=delivery_id(T0),
        rule_id="notify",
        body=b'{"text": "hi"}',
        retry=(0.0, 5.0, 300.0),
        secret_env="HOOK_SECRET",
        timeout_seconds=3.5,
        headers=(("x-team", "ops"), ("x-env", "test")),
    )
    target = make_delivery(
        event.id,
        T0,
        id=delivery_id(T0 + 0.001),
        target_id="wht_1",
        disable_after=3,
        retry=(5.0,),
    )
    accepted = await store.add_event(event, [target, rendered])
    assert accepted.event_id == event.id and not accepted.duplicate
    assert await store.deliveries_for_event(event.id) == [rendered, target]
    assert await store.get_delivery(rendered.id) == rendered
    assert await store.count_pending() == 2


async def test_a_delivery_added_with_an_attempt_keeps_it(store: Store) -> None:
    event = make_event("app_1", T0)
    unsendable = attempt(T0, None, latency_ms=0.0, error="template failed", response_excerpt=None)
    failed = make_delivery(
        event.id, T0, status="failed", next_attempt_at=None, attempt_count=1, attempts=(unsendable,)
    )
    await store.add_event(event, [failed])
    assert await store.get_delivery(failed.id) == failed
    assert await store.count_pending() == 0

    await store.requeue([failed.id], T0 + 1)
    await store.claim_due(T0 + 1, 10, held(T0 + 60))
    ok = attempt(T0 + 1, 200)
    await store.finish_attempt(failed.id, ok, "succeeded", None, TOKEN)
    done = await store.get_delivery(failed.id)
    assert done is not None
    assert (done.attempt_count, done.attempts) == (2, (unsendable, ok))


async def test_repeated_idempotency_key_returns_the_original_and_stores_nothing(
    store: Store,
) -> None:
    first = make_event("app_1", T0, key="order-42")
    await store.add_event(first, [make_delivery(first.id, T0)])

    again = make_event("app_1", T0 + 1, key="order-42", payload=b'{"n": 2}')
    extra = [make_delivery(again.id, T0 + 1), make_delivery(again.id, T0 + 1.001)]
    accepted = await store.add_event(again, extra)

    assert (accepted.event_id, accepted.duplicate) == (first.id, True)
    assert await store.get_event(again.id) is None
    assert await store.get_event(first.id) == first
    assert await store.count_events() == 1
    assert await store.deliveries_for_event(again.id) == []
    assert await store.get_delivery(extra[0].id) is None
    assert await store.count_pending() == 1


async def test_idempotency_keys_are_per_app(store: Store) -> None:
    one = make_event("app_1", T0, key="k")
    two = make_event("app_2", T0 + 1, key="k")
    assert (await store.add_event(one, [])).duplicate is False
    assert (await store.add_event(two, [])).duplicate is False
    assert await store.count_events() == 2


async def test_concurrent_events_with_one_key_store_exactly_one(store: Store) -> None:
    events = [make_event("app_1", T0 + i / 1000, key="same") for i in range(50)]
    results = await asyncio.gather(
        *(store.add_event(e, [make_delivery(e.id, e.received_at)]) for e in events)
    )
    originals = [r for r in results if not r.duplicate]
    assert len(originals) == 1
    winner = originals[0].event_id
    assert {r.event_id for r in results} == {winner}
    assert await store.count_events() == 1
    listed = await store.list_deliveries(DeliveryFilter())
    assert [d.event_id for d in listed.data] == [winner]
    assert await store.count_pending() == 1


async def test_find_idempotent_honours_since(store: Store) -> None:
    event = make_event("app_1", T0, key="k1")
    await store.add_event(event, [])
    assert await store.find_idempotent("app_1", "k1", T0 - 1) == event.id
    assert await store.find_idempotent("app_1", "k1", T0) == event.id
    assert await store.find_idempotent("app_1", "k1", T0 + 1) is None
    assert await store.find_idempotent("app_1", "other", T0 - 1) is None
    assert await store.find_idempotent("app_2", "k1", T0 - 1) is None


async def _seed_events(store: Store) -> list[Event]:
    """Six events, one second apart: apps a/b alternate, types x, y, x, None, x, y."""
    kinds = ["x", "y", "x", None, "x", "y"]
    events = [
        make_event("app_a" if i % 2 == 0 else "app_b", T0 + i, event_type=kind)
        for i, kind in enumerate(kinds)
    ]
    for event in events:
        await store.add_event(event, [])
    return events


async def test_list_events_newest_first_with_filters(store: Store) -> None:
    events = await _seed_events(store)
    newest_first = events[::-1]

    page = await store.list_events()
    assert page.data == newest_first and page.next_cursor is None
    assert (await store.list_events(app_id="app_a")).data == [events[4], events[2], events[0]]
    assert (await store.list_events(event_type="x")).data == [events[4], events[2], events[0]]
    assert (await store.list_events(app_id="app_b", event_type="y")).data == [
        events[5],
        events[1],
    ]
    assert (await store.list_events(since=T0 + 3)).data == newest_first[:3]
    assert (await store.list_events(app_id="app_nobody")).data == []
    assert await store.count_events() == 6


async def test_list_events_cursor_walks_every_page(store: Store) -> None:
    events = await _seed_events(store)
    seen: list[Event] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_events(cursor=cursor, limit=4)
        pages += 1
        seen += page.data
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.data[-1].id
        cursor = page.next_cursor
    assert pages == 2
    assert seen == events[::-1]

    exact = await store.list_events(limit=6)
    assert len(exact.data) == 6 and exact.next_cursor is None

    filtered = await store.list_events(app_id="app_a", limit=2)
    assert filtered.data == [events[4], events[2]]
    rest = await store.list_events(app_id="app_a", limit=2, cursor=filtered.next_cursor)
    assert rest.data == [events[0]] and rest.next_cursor is None


async def test_events_of_one_millisecond_list_newest_first_in_the_order_made(
    store: Store,
) -> None:
    # Back-to-back ingests often share a millisecond: lists, cursors and backtest samples
    # must still show them in the order they were accepted, on every backend.
    at = T0 + 0.0004
    events = [make_event("app_a" if n % 3 else "app_b", at) for n in range(40)]
    for event in events:
        await store.add_event(event, [])
    assert (await store.list_events(limit=100)).data == events[::-1]
    assert (await store.list_events(app_id="app_b", since=at)).data == [
        e for e in events[::-1] if e.app_id == "app_b"
    ]
    seen: list[Event] = []
    cursor: str | None = None
    while True:
        page = await store.list_events(event_type="order.created", cursor=cursor, limit=7)
        seen += page.data
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == events[::-1]


async def test_an_empty_event_type_is_not_a_missing_one(store: Store) -> None:
    blank = make_event("app_1", T0, event_type="")
    untyped = make_event("app_1", T0 + 1, event_type=None)
    await store.add_event(blank, [])
    await store.add_event(untyped, [])
    assert await store.get_event(blank.id) == blank
    assert await store.get_event(untyped.id) == untyped
    assert (await store.list_events(event_type="")).data == [blank]


async def test_filtered_lists_page_through_sparse_matches(store: Store) -> None:
    """Few matches among many rows: every page is full and the cursor finds the rest."""
    events = [
        make_event("app_rare" if i % 150 == 0 else "app_common", T0 + i, event_type="x")
        for i in range(450)
    ]
    for event in events:
        delivery = make_delivery(event.id, event.received_at, target_id="wht_" + event.app_id)
        await store.add_event(event, [delivery])
    first = await store.list_events(app_id="app_rare", event_type="x", limit=2)
    assert first.data == [events[300], events[150]]
    rest = await store.list_events(
        app_id="app_rare", event_type="x", limit=2, cursor=first.next_cursor
    )
    assert rest.data == [events[0]] and rest.next_cursor is None
    recent = await store.list_events(event_type="x", since=T0 + 448, limit=5)
    assert recent.data == [events[449], events[448]] and recent.next_cursor is None

    flt = DeliveryFilter(status="pending", target_id="wht_app_rare")
    page = await store.list_deliveries(flt, limit=2)
    assert [d.event_id for d in page.data] == [events[300].id, events[150].id]
    more = await store.list_deliveries(flt, cursor=page.next_cursor, limit=2)
    assert [d.event_id for d in more.data] == [events[0].id] and more.next_cursor is None
    late = await store.list_deliveries(DeliveryFilter(status="pending", since=T0 + 449))
    assert [d.event_id for d in late.data] == [events[449].id]


# webhook targets


async def test_target_crud_and_targets_version(store: Store) -> None:
    versions = [await store.targets_version()]
    first = make_target(
        T0,
        events=("order.created", "order.paid"),
        filter={">": [{"var": "total"}, 100]},
        retry=(1.0, 30.0),
        disable_after=None,
        reenable_after=90.0,
        description="orders over 100",
    )
    second = make_target(T0 + 1, retry="none")
    await store.create_target(first)
    versions.append(await store.targets_version())
    await store.create_target(second)
    versions.append(await store.targets_version())

    assert await store.get_target(first.id) == first
    assert await store.get_target(second.id) == second
    assert await store.get_target("wht_missing") is None
    assert await store.list_targets() == [first, second]

    changed = dataclasses.replace(
        second,
        url="http://127.0.0.1:9/other",
        status="disabled",
        disabled_at=T0 + 2,
        next_probe_at=T0 + 602,
        probe_interval=600.0,
        probe_delivery_id="dlv_probe",
    )
    await store.save_target(changed)
    versions.append(await store.targets_version())
    assert await store.get_target(second.id) == changed

    assert await store.delete_target(first.id) is True
    versions.append(await store.targets_version())
    assert await store.delete_target(first.id) is False
    assert await store.targets_version() == versions[-1]
    assert await store.list_targets() == [changed]
    assert len(set(versions)) == len(versions), versions


async def test_a_targets_ordering_reads_back_and_survives_outcomes(store: Store) -> None:
    keyed = make_target(T0, ordering="fifo", ordering_key={"var": "customer.id"})
    whole = make_target(T0 + 1, ordering="fifo")
    await store.create_target(keyed)
    await store.create_target(whole)
    assert await store.get_target(keyed.id) == keyed
    assert await store.list_targets() == [keyed, whole]
    counted = await store.record_target_outcome(keyed.id, False, 3)
    assert counted is not None
    assert (counted.ordering, counted.ordering_key) == ("fifo", {"var": "customer.id"})
    unordered = dataclasses.replace(whole, ordering=None)
    await store.save_target(unordered)
    assert await store.get_target(whole.id) == unordered


async def test_consecutive_failures_disable_a_target_at_disable_after(store: Store) -> None:
    target = make_target(T0, disable_after=3)
    await store.create_target(target)

    one = await store.record_target_outcome(target.id, False, 3)
    two = await store.record_target_outcome(target.id, False, 3)
    assert one is not None and two is not None
    assert (one.consecutive_failures, one.status) == (1, "active")
    assert (two.consecutive_failures, two.status) == (2, "active")

    before = await store.targets_version()
    three = await store.record_target_outcome(target.id, False, 3)
    assert three is not None
    assert (three.consecutive_failures, three.status) == (3, "disabled")
    assert await store.get_target(target.id) == three
    assert await store.targets_version() != before


async def test_a_success_resets_the_failure_count(store: Store) -> None:
    target = make_target(T0)
    await store.create_target(target)
    await store.record_target_outcome(target.id, False, 3)
    await store.record_target_outcome(target.id, False, 3)
    reset = await store.record_target_outcome(target.id, True, 3)
    assert reset is not None
    assert (reset.consecutive_failures, reset.status) == (0, "active")
    for _ in range(2):
        after = await store.record_target_outcome(target.id, False, 3)
    assert after is not None
    assert (after.consecutive_failures, after.status) == (2, "active")
    stored = await store.get_target(target.id)
    assert stored is not None and stored.consecutive_failures == 2


async def test_gone_disables_at_once_and_no_limit_never_disables(store: Store) -> None:
    gone = make_target(T0)
    patient = make_target(T0 + 1, disable_after=None)
    await store.create_target(gone)
    await store.create_target(patient)

    result = await store.record_target_outcome(gone.id, False, None, gone=True)
    assert result is not None and result.status == "disabled"
    for _ in range(10):
        result = await store.record_target_outcome(patient.id, False, None)
    assert result is not None
    assert (result.consecutive_failures, result.status) == (10, "active")
    assert await store.record_target_outcome("wht_missing", False, 3) is None


# held, not dropped: deliveries for a disabled target wait as `held`


async def _target_with_deliveries(
    store: Store, count: int, **fields: Any
) -> tuple[WebhookTarget, list[Delivery]]:
    """A target and `count` pending, unleased deliveries for it (in accept order), plus
    one for another target that nothing here may touch."""
    target = make_target(T0, **fields)
    other = make_target(T0 + 0.5)
    await store.create_target(target)
    await store.create_target(other)
    event = make_event("app_1", T0)
    deliveries = [make_delivery(event.id, T0 + i / 1000, target_id=target.id) for i in range(count)]
    bystander = make_delivery(event.id, T0 + 0.9, target_id=other.id)
    await store.add_event(event, [*deliveries, bystander])
    return target, deliveries


async def _statuses(store: Store, ids: list[str]) -> list[str]:
    found = [await store.get_delivery(i) for i in ids]
    return [d.status if d is not None else "missing" for d in found]


async def test_disabling_after_failures_holds_pending_deliveries(store: Store) -> None:
    target, deliveries = await _target_with_deliveries(store, 3, reenable_after=90.0)
    leased = deliveries[2]
    await store.claim_due(T0 + 1, 10, held(T0 + 60))
    # the first two go back to the queue; the third stays with its (live) holder
    await store.release({d.id: TOKEN for d in deliveries[:2]})
    before = await store.targets_version()

    disabled = await store.record_target_outcome(target.id, False, 1, now=T0 + 10)

    assert disabled is not None and disabled.status == "disabled"
    assert disabled.disabled_at == T0 + 10
    assert disabled.probe_interval == 90.0 and disabled.next_probe_at == T0 + 100
    assert await store.targets_version() != before
    assert await _statuses(store, [d.id for d in deliveries]) == ["held", "held", "pending"]
    page = await store.list_deliveries(DeliveryFilter(status="held"))
    assert [d.id for d in page.data] == [deliveries[1].id, deliveries[0].id]
    assert all(d.next_attempt_at is None for d in page.data)
    # the claimed one, once its holder finds the target disabled, is held under its token
    assert await store.hold({leased.id: "not-the-holder"}) == []
    assert await store.hold({leased.id: TOKEN}) == [leased.id]
    assert await _statuses(store, [leased.id]) == ["held"]
    # held rows are neither claimable nor pruned
    claimed = await store.claim_due(T0 + 10_000, 10, held(T0 + 10_060, "holder-2"))
    assert [d.id for d in claimed if d.target_id == target.id] == []
    await store.prune(T0 + 10_000, T0 + 10_000)
    assert await _statuses(store, [d.id for d in deliveries]) == ["held"] * 3


async def test_disabled_by_hand_holds_and_active_releases_at_once_in_order(store: Store) -> None:
    target, deliveries = await _target_with_deliveries(store, 3)
    disabled = await store.set_target_status(target.id, "disabled", T0 + 5)
    assert disabled is not None and disabled.status == "disabled"
    assert disabled.probe_interval is None and disabled.next_probe_at is None
    # events accepted meanwhile arrive held
    later = make_event("app_1", T0 + 6)
    new = make_delivery(later.id, T0 + 6, target_id=target.id, status="held", next_attempt_at=None)
    await store.add_event(later, [new])
    ids = [*(d.id for d in deliveries), new.id]
    assert await _statuses(store, ids) == ["held"] * 4
    # never probed, and a stray outcome does not re-enable it
    assert await store.probe_targets(T0 + 1_000_000) == []
    still = await store.record_target_outcome(target.id, True, 3, now=T0 + 7)
    assert still is not None and still.status == "disabled"

    active = await store.set_target_status(target.id, "active", T0 + 50)

    assert active is not None and active.status == "active" and active.disabled_at is None
    assert active.consecutive_failures == 0
    assert await _statuses(store, ids) == ["pending"] * 4
    claimed = await store.claim_due(T0 + 50, 10, held(T0 + 110))
    assert [d.id for d in claimed if d.target_id == target.id] == ids
    assert all(d.next_attempt_at == T0 + 50 for d in claimed if d.target_id == target.id)


async def test_the_probe_is_the_oldest_held_delivery_and_its_success_releases_the_rest(
    store: Store,
) -> None:
    target, deliveries = await _target_with_deliveries(store, 4, reenable_after=60.0)
    await store.record_target_outcome(target.id, False, 1, now=T0 + 10)
    assert await store.probe_targets(T0 + 69) == []  # not yet

    assert await store.probe_targets(T0 + 70) == [deliveries[0].id]

    probing = await store.get_target(target.id)
    assert probing is not None and probing.probe_delivery_id == deliveries[0].id
    assert await store.probe_targets(T0 + 200) == []  # one probe out at a time
    claimed = await store.claim_due(T0 + 70, 10, held(T0 + 130))
    assert [d.id for d in claimed if d.target_id == target.id] == [deliveries[0].id]
    # the probe is not held again by a holder that finds its target disabled
    assert await store.hold({deliveries[0].id: TOKEN}) == []
    claimed = await store.claim_due(T0 + 71, 10, held(T0 + 131))
    assert [d.id for d in claimed if d.target_id == target.id] == [deliveries[0].id]
    assert await store.finish_attempt(
        deliveries[0].id, attempt(T0 + 71, 200), "succeeded", None, TOKEN
    )

    enabled = await store.record_target_outcome(target.id, True, 1, now=T0 + 72)

    assert enabled is not None and enabled.status == "active"
    assert (enabled.next_probe_at, enabled.probe_interval, enabled.probe_delivery_id) == (
        None,
        None,
        None,
    )
    rest = [d.id for d in deliveries[1:]]
    assert await _statuses(store, rest) == ["pending"] * 3
    claimed = await store.claim_due(T0 + 72, 10, held(T0 + 132))
    assert [d.id for d in claimed if d.target_id == target.id] == rest


async def test_a_failed_probe_is_held_again_and_doubles_the_wait_up_to_the_cap(
    store: Store,
) -> None:
    target, deliveries = await _target_with_deliveries(store, 2, reenable_after=4 * 3600.0)
    await store.record_target_outcome(target.id, False, 1, now=T0)
    waits = []
    now = T0
    for _ in range(3):
        current = await store.get_target(target.id)
        assert current is not None and current.next_probe_at is not None
        now = current.next_probe_at
        assert await store.probe_targets(now) == [deliveries[0].id]
        claimed = await store.claim_due(now, 10, held(now + 60))
        assert [d.id for d in claimed if d.target_id == target.id] == [deliveries[0].id]
        failure = attempt(now, 503, error="HTTP 503")
        assert await store.finish_attempt(deliveries[0].id, failure, "held", None, TOKEN)
        after = await store.record_target_outcome(target.id, False, 1, now=now)
        assert after is not None and after.status == "disabled"
        assert after.probe_delivery_id is None
        waits.append(after.probe_interval)
        assert after.next_probe_at == now + (after.probe_interval or 0)
    assert waits == [6 * 3600.0] * 3  # 4 h doubled is past the 6 h cap
    assert await _statuses(store, [d.id for d in deliveries]) == ["held", "held"]
    probe = await store.get_delivery(deliveries[0].id)
    assert probe is not None and probe.attempt_count == 3


async def test_a_failed_probe_doubles_a_short_wait(store: Store) -> None:
    target, deliveries = await _target_with_deliveries(store, 1, reenable_after=2.0)
    await store.record_target_outcome(target.id, False, 1, now=T0)
    assert await store.probe_targets(T0 + 2) == [deliveries[0].id]
    await store.claim_due(T0 + 2, 10, held(T0 + 62))
    await store.finish_attempt(deliveries[0].id, attempt(T0 + 2, 500), "held", None, TOKEN)
    after = await store.record_target_outcome(target.id, False, 1, now=T0 + 3)
    assert after is not None and (after.probe_interval, after.next_probe_at) == (4.0, T0 + 7)


async def test_deleting_a_target_skips_its_held_deliveries(store: Store) -> None:
    target, deliveries = await _target_with_deliveries(store, 2)
    await store.set_target_status(target.id, "disabled", T0 + 1)
    assert await store.delete_target(target.id)
    assert await _statuses(store, [d.id for d in deliveries]) == ["skipped", "skipped"]
    assert await store.list_deliveries(DeliveryFilter(status="held")) == Page([], None)


async def test_probe_targets_releases_held_of_an_active_target_and_skips_a_deleted_ones(
    store: Store,
) -> None:
    """Deliveries planned as held by a process whose view of the target was behind."""
    active = make_target(T0)
    await store.create_target(active)
    event = make_event("app_1", T0)
    stale = make_delivery(event.id, T0, target_id=active.id, status="held", next_attempt_at=None)
    orphan = make_delivery(
        event.id, T0 + 0.001, target_id="wht_gone", status="held", next_attempt_at=None
    )
    await store.add_event(event, [stale, orphan])

    assert await store.probe_targets(T0 + 5) == [stale.id]

    assert await _statuses(store, [stale.id, orphan.id]) == ["pending", "skipped"]
    claimed = await store.claim_due(T0 + 5, 10, held(T0 + 65))
    assert [d.id for d in claimed] == [stale.id]


# deliveries


async def test_claim_due_honours_next_attempt_at_and_limit(store: Store) -> None:
    event = make_event("app_1", T0)
    due = [make_delivery(event.id, T0 + i / 1000, next_attempt_at=T0 + i) for i in range(3)]
    later = make_delivery(event.id, T0 + 0.9, next_attempt_at=T0 + 100)
    await store.add_event(event, [*due, later])

    assert await store.claim_due(T0 - 1, 10, held(T0 + 1000)) == []
    first = await store.claim_due(T0 + 5, 2, held(T0 + 1000))  # the two that fell due first
    assert sorted(d.id for d in first) == [due[0].id, due[1].id]
    rest = await store.claim_due(T0 + 5, 10, held(T0 + 1000))
    assert [d.id for d in rest] == [due[2].id]
    assert await store.claim_due(T0 + 5, 10, held(T0 + 1000)) == []
    assert [d.id for d in await store.claim_due(T0 + 100, 10, held(T0 + 1000))] == [later.id]


async def test_a_leased_delivery_is_claimed_again_only_after_its_lease(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    claimed = await store.claim_due(T0, 10, held(T0 + 60))
    assert [d.id for d in claimed] == [delivery.id]
    assert claimed[0].status == "pending" and claimed[0].attempt_count == 0

    assert await store.claim_due(T0 + 30, 10, held(T0 + 90)) == []
    assert await store.claim_due(T0 + 59.9, 10, held(T0 + 120)) == []
    again = await store.claim_due(T0 + 60, 10, held(T0 + 120))
    assert [d.id for d in again] == [delivery.id]


async def test_has_due_agrees_with_claim_due(store: Store) -> None:
    assert await store.has_due(T0 + 1000) is False
    delivery = await add_with_delivery(store, "app_1", T0, next_attempt_at=T0 + 10)
    assert await store.has_due(T0 + 9) is False
    assert await store.has_due(T0 + 10) is True
    await store.claim_due(T0 + 10, 10, held(T0 + 60))
    assert await store.has_due(T0 + 30) is False  # leased
    assert await store.has_due(T0 + 60) is True  # the lease ran out
    await store.claim_due(T0 + 60, 10, held(T0 + 120))
    await store.finish_attempt(delivery.id, attempt(T0 + 60, 200), "succeeded", None, TOKEN)
    assert await store.has_due(T0 + 10_000) is False


async def test_add_event_leases_its_deliveries_until_lease_until(store: Store) -> None:
    event = make_event("app_1", T0)
    delivery = make_delivery(event.id, T0)
    await store.add_event(event, [delivery], lease=held(T0 + 10))
    assert await store.claim_due(T0 + 1, 10, held(T0 + 60)) == []
    assert [d.id for d in await store.claim_due(T0 + 10, 10, held(T0 + 60))] == [delivery.id]


async def test_add_deliveries_and_their_lease(store: Store) -> None:
    event = make_event("app_1", T0)
    await store.add_event(event, [])
    free, leased = make_delivery(event.id, T0), make_delivery(event.id, T0 + 0.001)
    await store.add_deliveries([free])
    await store.add_deliveries([leased], lease=held(T0 + 30))
    assert [d.id for d in await store.deliveries_for_event(event.id)] == [free.id, leased.id]
    assert [d.id for d in await store.claim_due(T0, 10, held(T0 + 60))] == [free.id]
    assert [d.id for d in await store.claim_due(T0 + 30, 10, held(T0 + 90))] == [leased.id]


async def test_finish_attempt_records_attempts_in_order_and_moves_status(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0, retry=(5.0, 300.0))
    await store.claim_due(T0, 10, held(T0 + 60))

    failed = attempt(T0, 503, error="HTTP 503", response_excerpt="busy", retry_after=7.0)
    await store.finish_attempt(delivery.id, failed, "pending", T0 + 7, TOKEN)
    after_one = await store.get_delivery(delivery.id)
    assert after_one is not None
    assert after_one.status == "pending"
    assert after_one.next_attempt_at == T0 + 7
    assert after_one.attempt_count == 1
    assert after_one.attempts == (failed,)

    # finishing released the lease: due again at T0 + 7, long before the lease ran out
    assert await store.claim_due(T0 + 6, 10, held(T0 + 120)) == []
    assert [d.id for d in await store.claim_due(T0 + 7, 10, held(T0 + 120))] == [delivery.id]

    refused = attempt(T0 + 7, None, latency_ms=0.5, error="connection refused")
    await store.finish_attempt(delivery.id, refused, "pending", T0 + 307, TOKEN)
    ok = attempt(T0 + 307, 200, latency_ms=40.25, response_excerpt='{"ok": true}')
    await store.claim_due(T0 + 307, 10, held(T0 + 400))
    await store.finish_attempt(delivery.id, ok, "succeeded", None, TOKEN)

    done = await store.get_delivery(delivery.id)
    assert done is not None
    assert done.status == "succeeded"
    assert done.next_attempt_at is None
    assert done.attempt_count == 3
    assert done.attempts == (failed, refused, ok)
    assert await store.count_pending() == 0
    assert await store.claim_due(T0 + 10_000, 10, held(T0 + 10_060)) == []


async def test_an_attempt_keeps_the_request_sent_and_the_response_received(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0, retry=(5.0,))
    await store.claim_due(T0, 10, held(T0 + 60))
    sent = attempt(
        T0,
        502,
        error="HTTP 502",
        response_excerpt="bad gateway",
        request_method="POST",
        request_url="https://crm.example.com/hook?k=1",
        request_headers=(
            ("Content-Type", "application/json"),
            ("webhook-signature", "…"),
            ("X-Api-Key", "abc"),
            ("X-Api-Key", "second value"),
        ),
        request_body='{"n": 1, "text": "caf\u00e9 \u2713"}',
        response_headers=(("Content-Type", "text/plain"), ("Retry-After", "3")),
        rate_slot_at=T0 - 0.123456,  # to the microsecond: rate-limit tests compare these
    )
    assert await store.finish_attempt(delivery.id, sent, "pending", T0 + 5, TOKEN)
    # A second attempt without an exchange (refused before sending) keeps the defaults.
    await store.claim_due(T0 + 5, 10, held(T0 + 60))
    refused = attempt(T0 + 5, None, latency_ms=0.0, error="host 10.0.0.1 is a private address")
    assert await store.finish_attempt(delivery.id, refused, "failed", None, TOKEN)
    got = await store.get_delivery(delivery.id)
    assert got is not None
    assert got.attempts == (sent, refused)
    first = got.attempts[0]
    assert first.request_headers[3] == ("X-Api-Key", "second value")
    assert first.response_headers == (("Content-Type", "text/plain"), ("Retry-After", "3"))
    assert got.attempts[1].request_method is None and got.attempts[1].request_headers == ()
    assert (first.rate_slot_at, got.attempts[1].rate_slot_at) == (T0 - 0.123456, None)


async def test_sqlite_attempts_from_before_the_exchange_columns_keep_working(
    tmp_path: Path,
) -> None:
    """An attempts table without `request`/`response_headers` gains them on open; its old
    rows read with no exchange and new attempts store theirs."""
    path = tmp_path / "old-attempts.db"
    store = SqliteStore(path, synchronous="normal")
    await store.open()
    delivery = await add_with_delivery(store, "app_1", T0, retry=(5.0,))
    await store.close()
    conn = sqlite3.connect(path)
    conn.executescript(
        f"""DROP TABLE attempts;
CREATE TABLE attempts (
    delivery_id TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER,
    latency_ms REAL NOT NULL, error TEXT, response_excerpt TEXT, retry_after REAL,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
INSERT INTO attempts VALUES ('{delivery.id}', 1, {T0}, 500, 3.0, 'HTTP 500', 'old', NULL);
UPDATE deliveries SET attempt_count = 1 WHERE id = '{delivery.id}';"""
    )
    conn.close()
    store = SqliteStore(path, synchronous="normal")
    await store.open()
    try:
        await store.claim_due(T0 + 10, 10, held(T0 + 60))
        new = attempt(
            T0 + 10,
            200,
            request_method="POST",
            request_url="https://crm.example.com/hook",
            request_headers=(("Authorization", "…"),),
            request_body="{}",
            response_headers=(("Server", "x"),),
            rate_slot_at=T0 + 9.5,
        )
        assert await store.finish_attempt(delivery.id, new, "succeeded", None, TOKEN)
        got = await store.get_delivery(delivery.id)
        assert got is not None
        old = attempt(T0, 500, latency_ms=3.0, error="HTTP 500", response_excerpt="old")
        assert got.attempts == (old, new)
    finally:
        await store.close()


async def test_a_failed_delivery_is_not_claimed(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    await store.claim_due(T0, 10, held(T0 + 60))
    await store.finish_attempt(
        delivery.id, attempt(T0, 500, error="HTTP 500"), "failed", None, TOKEN
    )
    stored = await store.get_delivery(delivery.id)
    assert stored is not None and stored.status == "failed"
    assert await store.claim_due(T0 + 1000, 10, held(T0 + 1060)) == []
    assert await store.get_delivery("dlv_missing") is None


async def test_requeue_makes_deliveries_pending_and_due_now(store: Store) -> None:
    one = await add_with_delivery(store, "app_1", T0)
    two = await add_with_delivery(store, "app_1", T0 + 1)
    await store.claim_due(T0 + 1, 10, held(T0 + 60))
    await store.finish_attempt(
        one.id, attempt(T0 + 1, 500, error="HTTP 500"), "failed", None, TOKEN
    )

    assert await store.requeue([one.id, two.id, "dlv_missing"], T0 + 5) == 2
    requeued = await store.get_delivery(one.id)
    assert requeued is not None
    assert (requeued.status, requeued.next_attempt_at) == ("pending", T0 + 5)
    assert len(requeued.attempts) == 1
    # requeue also drops the lease `two` still held
    claimed = await store.claim_due(T0 + 5, 10, held(T0 + 65))
    assert sorted(d.id for d in claimed) == sorted([one.id, two.id])
    assert await store.count_pending() == 2


async def test_a_delayed_delivery_is_claimed_only_once_due(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0, next_attempt_at=T0 + 7200)
    assert await store.has_due(T0 + 7199) is False
    assert await store.claim_due(T0 + 7199, 10, held(T0 + 7260)) == []
    claimed = await store.claim_due(T0 + 7200, 10, held(T0 + 7260))
    assert [d.id for d in claimed] == [delivery.id]


async def test_cancel_marks_pending_deliveries_cancelled_and_unclaimable(store: Store) -> None:
    scheduled = await add_with_delivery(store, "app_1", T0, next_attempt_at=T0 + 3600)
    leased = await add_with_delivery(store, "app_1", T0 + 1)
    done = await add_with_delivery(store, "app_1", T0 + 2)
    await store.claim_due(T0 + 2, 10, held(T0 + 60))
    await store.finish_attempt(done.id, attempt(T0 + 2, 200), "succeeded", None, TOKEN)

    cancelled = await store.cancel([scheduled.id, leased.id, done.id, "dlv_missing"])

    assert sorted(cancelled) == sorted([scheduled.id, leased.id])
    for delivery_id_ in (scheduled.id, leased.id):
        row = await store.get_delivery(delivery_id_)
        assert row is not None and row.status == "cancelled"
    finished = await store.get_delivery(done.id)
    assert finished is not None and finished.status == "succeeded"
    assert await store.count_pending() == 0
    assert await store.claim_due(T0 + 7200, 10, held(T0 + 7260, "later")) == []
    # the holder of `leased` finishes after the cancel: nothing is recorded
    late = attempt(T0 + 3, 200)
    assert await store.finish_attempt(leased.id, late, "succeeded", None, TOKEN) is False
    row = await store.get_delivery(leased.id)
    assert row is not None and (row.status, row.attempts) == ("cancelled", ())
    page = await store.list_deliveries(DeliveryFilter(status="cancelled"))
    assert sorted(d.id for d in page.data) == sorted([scheduled.id, leased.id])
    assert await store.cancel([scheduled.id]) == []


# ordered delivery (ordering = "fifo"): one at a time per key, in accept order


async def accept_ordered(store: Store, at: float, key: str | None, **fields: Any) -> Delivery:
    """One event with one delivery under ordering key `key`, committed now. Its id is made
    to sort *before* every earlier one, so a store that ordered by id would fail."""
    event = make_event("app_1", at)
    delivery = make_delivery(
        event.id, at, id=delivery_id(T0 + 10_000 - at), ordering_key=key, **fields
    )
    await store.add_event(event, [delivery])
    return delivery


async def claim_ids(store: Store, now: float, token: str = TOKEN) -> list[str]:
    return sorted(d.id for d in await store.claim_due(now, 100, held(now + 60, token)))


async def finish(store: Store, delivery: Delivery, now: float, status: str, **fields: Any) -> None:
    code = 200 if status == "succeeded" else 500
    ok = await store.finish_attempt(
        delivery.id, attempt(now, code), status, fields.get("next_at"), fields.get("token", TOKEN)
    )
    assert ok


async def test_one_keys_deliveries_are_claimed_one_at_a_time_in_accept_order(
    store: Store,
) -> None:
    a = [await accept_ordered(store, T0 + n, 'r#0|"A"') for n in range(3)]
    b = [await accept_ordered(store, T0 + 10 + n, 'r#0|"B"') for n in range(2)]
    plain = [await accept_ordered(store, T0 + 20 + n, None) for n in range(2)]

    assert await claim_ids(store, T0 + 30) == sorted([a[0].id, b[0].id, *(d.id for d in plain)])
    # the heads are held: nothing more of either key, however long we ask
    assert await claim_ids(store, T0 + 31) == []
    assert await store.has_due(T0 + 31) is False
    await finish(store, a[0], T0 + 32, "succeeded")
    assert await store.has_due(T0 + 32) is True
    assert await claim_ids(store, T0 + 32) == [a[1].id]
    await finish(store, a[1], T0 + 33, "succeeded")
    await finish(store, b[0], T0 + 33, "succeeded")
    assert await claim_ids(store, T0 + 33) == sorted([a[2].id, b[1].id])
    claimed = await store.get_delivery(a[2].id)
    assert claimed is not None and claimed.ordering_key == 'r#0|"A"'


async def test_a_claim_that_skips_a_host_keeps_the_rule_for_ordered_rows(store: Store) -> None:
    ok, hung = "https://ok.example/hook", "https://hung.example:8443/hook"
    a = [await accept_ordered(store, T0 + n, "k|a", url=ok) for n in range(2)]
    held_back = [await accept_ordered(store, T0 + 2 + n, "k|h", url=hung) for n in range(2)]
    plain = await accept_ordered(store, T0 + 4, None, url=ok)
    skip = ["hung.example:8443"]

    async def claim(now: float) -> list[str]:
        claimed = await store.claim_due(now, 100, held(now + 60), skip_hosts=skip)
        return sorted(d.id for d in claimed)

    assert await claim(T0 + 10) == sorted([a[0].id, plain.id])
    assert await claim(T0 + 11) == []  # a[1] waits for its head, the hung host is skipped
    await finish(store, a[0], T0 + 12, "succeeded")
    assert await claim(T0 + 12) == [a[1].id]
    # the skipped host's key starts at its head once the host is claimed again
    assert await claim_ids(store, T0 + 13) == [held_back[0].id]


async def test_a_failing_head_blocks_only_its_own_key_until_it_fails_for_good(
    store: Store,
) -> None:
    a1, a2 = [await accept_ordered(store, T0 + n, "k|a") for n in range(2)]
    b1, b2 = [await accept_ordered(store, T0 + 2 + n, "k|b") for n in range(2)]
    assert await claim_ids(store, T0 + 5) == sorted([a1.id, b1.id])
    # a1 fails, its retry is due at T0 + 100; b goes on meanwhile, a2 waits
    await finish(store, a1, T0 + 6, "pending", next_at=T0 + 100)
    await finish(store, b1, T0 + 6, "succeeded")
    assert await claim_ids(store, T0 + 7) == [b2.id]
    await finish(store, b2, T0 + 8, "succeeded")
    assert await store.has_due(T0 + 50) is False
    assert await claim_ids(store, T0 + 50) == []
    # the retry comes due: the head again, still not a2
    assert await claim_ids(store, T0 + 100) == [a1.id]
    await finish(store, a1, T0 + 101, "failed")  # retries exhausted: the next one goes
    assert await claim_ids(store, T0 + 101) == [a2.id]


async def test_a_cancelled_head_or_a_cancelled_waiter_lets_the_key_go_on(store: Store) -> None:
    first, second, third, fourth = [
        await accept_ordered(store, T0 + n, "k", next_attempt_at=T0 + n) for n in range(4)
    ]
    assert await claim_ids(store, T0 + 10) == [first.id]
    assert sorted(await store.cancel([first.id, third.id])) == sorted([first.id, third.id])
    assert await claim_ids(store, T0 + 11) == [second.id]
    await finish(store, second, T0 + 12, "succeeded")
    assert await claim_ids(store, T0 + 12) == [fourth.id]


async def test_a_delayed_head_holds_its_key_until_it_is_sent(store: Store) -> None:
    later = await accept_ordered(store, T0, "k", next_attempt_at=T0 + 3600)
    now = await accept_ordered(store, T0 + 1, "k")
    assert await store.has_due(T0 + 10) is False
    assert await claim_ids(store, T0 + 10) == []
    assert await claim_ids(store, T0 + 3600) == [later.id]
    await finish(store, later, T0 + 3601, "succeeded")
    assert await claim_ids(store, T0 + 3601) == [now.id]


async def test_an_ordered_delivery_is_never_held_by_its_commit(store: Store) -> None:
    event = make_event("app_1", T0)
    first = make_delivery(event.id, T0, ordering_key="k")
    second = make_delivery(event.id, T0 + 0.001, ordering_key="k")
    await store.add_event(event, [first, second], lease=held(T0 + 60, "inline"))
    # the commit's lease does not hold them: a claim takes the head, and only the head
    assert await claim_ids(store, T0 + 1, "poller") == [first.id]
    refused = attempt(T0 + 1, 200)
    assert await store.finish_attempt(second.id, refused, "succeeded", None, "inline") is False


async def test_a_retried_ordered_delivery_joins_the_back_of_its_key(store: Store) -> None:
    first, second, third = [await accept_ordered(store, T0 + n, "k") for n in range(3)]
    assert await claim_ids(store, T0 + 5) == [first.id]
    await finish(store, first, T0 + 6, "failed")
    assert await claim_ids(store, T0 + 6) == [second.id]
    assert await store.requeue([first.id], T0 + 7) == 1
    # second is in flight: the retried one neither overtakes it nor goes beside it
    assert await claim_ids(store, T0 + 7) == []
    await finish(store, second, T0 + 8, "succeeded")
    assert await claim_ids(store, T0 + 8) == [third.id]
    await finish(store, third, T0 + 9, "succeeded")
    assert await claim_ids(store, T0 + 9) == [first.id]


# cancel_on: the store reads `cancel_superseded` makes (pending by rule, then events)

CANCEL_ON_RULES = """
[[rules]]
id = "review"
event_types = ["job_completed"]

  [[rules.actions]]
  type = "webhook"
  url = "https://sms.example.com/review"
  delay = "2h"
  cancel_on = { event_types = ["job_reopened"], match = "job.id" }

  [[rules.actions]]
  type = "webhook"
  url = "https://crm.example.com/now"
"""


async def test_a_reopened_job_cancels_only_its_own_scheduled_review(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "r.toml").write_text(CANCEL_ON_RULES)
    loaded = load_file(tmp_path / "r.toml", action_types=("webhook",), env={})
    assert loaded.errors == ()
    ruleset = RuleSet(loaded.rules)
    index = CancelIndex(ruleset)

    async def accept(n: int, app_id: str, job: str) -> list[str]:
        payload = {"event_type": "job_completed", "job": {"id": job}}
        event_id = f"evt_{n:026d}"
        matches = ruleset.match("fieldapp", payload, event_type="job_completed")
        deliveries = plan_deliveries(matches, event_id, payload, T0 + n)
        event = Event(event_id, app_id, "job_completed", T0 + n, orjson.dumps(payload))
        await store.add_event(event, deliveries)
        return [d.id for d in deliveries]

    reopened_review, reopened_now = await accept(1, "app_1", "j1")
    kept_review, _ = await accept(2, "app_1", "j2")
    other_app_review, _ = await accept(3, "app_2", "j1")

    cancelled = await cancel_superseded(
        store,
        index,
        app_id="app_1",
        app_name="fieldapp",
        event_type="job_reopened",
        payload={"event_type": "job_reopened", "job": {"id": "j1"}},
        before=T0 + 10,
    )

    assert cancelled == [reopened_review]
    statuses = {}
    for one_id in (reopened_review, reopened_now, kept_review, other_app_review):
        row = await store.get_delivery(one_id)
        assert row is not None
        statuses[one_id] = row.status
    assert statuses == {
        reopened_review: "cancelled",
        reopened_now: "pending",
        kept_review: "pending",
        other_app_review: "pending",
    }
    nothing = await cancel_superseded(
        store,
        index,
        app_id="app_1",
        app_name="fieldapp",
        event_type="job_reopened",
        payload={"event_type": "job_reopened"},
        before=T0 + 11,
    )
    assert nothing == []


async def test_a_stale_holders_finish_is_refused_and_records_nothing(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert len(await store.claim_due(T0, 10, held(T0 + 60, "first"))) == 1
    # the first holder stalls past its lease; a second one claims the row and sends it
    assert len(await store.claim_due(T0 + 60, 10, held(T0 + 120, "second"))) == 1
    late = attempt(T0 + 61, 200)
    assert await store.finish_attempt(delivery.id, late, "succeeded", None, "first") is False
    row = await store.get_delivery(delivery.id)
    assert row is not None
    assert (row.status, row.attempt_count, row.attempts) == ("pending", 0, ())
    # the current holder records its attempt, once
    ok = attempt(T0 + 62, 204)
    assert await store.finish_attempt(delivery.id, ok, "succeeded", None, "second") is True
    row = await store.get_delivery(delivery.id)
    assert row is not None
    assert (row.status, row.attempt_count, row.attempts) == ("succeeded", 1, (ok,))
    # and a finished row takes no further outcome from anyone
    again = attempt(T0 + 63, 500, error="HTTP 500")
    assert await store.finish_attempt(delivery.id, again, "failed", None, "second") is False
    assert await store.finish_attempt(delivery.id, again, "failed", None, "first") is False
    row = await store.get_delivery(delivery.id)
    assert row is not None and row.status == "succeeded" and row.attempt_count == 1


async def test_an_unleased_row_takes_no_outcome(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert (
        await store.finish_attempt(delivery.id, attempt(T0, 200), "succeeded", None, "x") is False
    )
    row = await store.get_delivery(delivery.id)
    assert row is not None and row.status == "pending" and row.attempt_count == 0


async def test_an_inline_lease_from_add_event_fences_like_a_claim(store: Store) -> None:
    event = make_event("app_1", T0)
    delivery = make_delivery(event.id, T0)
    await store.add_event(event, [delivery], lease=held(T0 + 10, "inline"))
    assert (
        await store.finish_attempt(delivery.id, attempt(T0, 200), "succeeded", None, "x") is False
    )
    assert (
        await store.finish_attempt(delivery.id, attempt(T0, 200), "succeeded", None, "inline")
        is True
    )


async def test_renew_extends_only_the_current_holders_leases(store: Store) -> None:
    one = await add_with_delivery(store, "app_1", T0)
    two = await add_with_delivery(store, "app_1", T0 + 0.001)
    assert len(await store.claim_due(T0 + 1, 10, held(T0 + 60, "a"))) == 2
    renewed = await store.renew({one.id: "a", two.id: "someone-else"}, T0 + 200)
    assert renewed == [one.id]
    # `two` kept its old lease and is free after it; `one` is held until T0 + 200
    assert [d.id for d in await store.claim_due(T0 + 60, 10, held(T0 + 120, "b"))] == [two.id]
    assert await store.claim_due(T0 + 100, 10, held(T0 + 160, "c")) == []
    # a lost lease does not come back by renewing it
    assert await store.renew({two.id: "a"}, T0 + 300) == []
    assert await store.renew({}, T0 + 300) == []
    again = await store.claim_due(T0 + 200, 10, held(T0 + 260, "c"))
    assert sorted(d.id for d in again) == [one.id, two.id]


async def test_release_works_only_for_the_holder(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert len(await store.claim_due(T0, 10, held(T0 + 60, "a"))) == 1
    await store.release({delivery.id: "not-a"})
    assert await store.claim_due(T0 + 1, 10, held(T0 + 61, "b")) == []
    await store.release({delivery.id: "a"})
    assert [d.id for d in await store.claim_due(T0 + 1, 10, held(T0 + 61, "b"))] == [delivery.id]
    # the old holder's finish is refused after its release
    assert (
        await store.finish_attempt(delivery.id, attempt(T0, 200), "succeeded", None, "a") is False
    )


# delivery rate limits


async def test_delivery_slots_allow_a_burst_then_one_per_interval(store: Store) -> None:
    # rate 5/s, burst 3: three at once, then one every 0.2 s
    waits = [await store.take_delivery_slot("target:wht_a", 5.0, 3, T0) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.2, abs=1e-5)
    assert await store.take_delivery_slot("target:wht_a", 5.0, 3, T0 + 0.2) == 0.0
    assert await store.take_delivery_slot("target:wht_a", 5.0, 3, T0 + 0.2) == pytest.approx(
        0.2, abs=1e-5
    )
    # after a quiet spell the whole burst is back, and no more
    later = T0 + 100
    assert [await store.take_delivery_slot("target:wht_a", 5.0, 3, later) for _ in range(3)] == [
        0.0
    ] * 3
    assert await store.take_delivery_slot("target:wht_a", 5.0, 3, later) > 0


async def test_a_refused_delivery_slot_spends_nothing(store: Store) -> None:
    assert await store.take_delivery_slot("rule:r:0", 1.0, 1, T0) == 0.0
    # asking again and again while waiting does not push the slot further away
    for _ in range(5):
        assert await store.take_delivery_slot("rule:r:0", 1.0, 1, T0 + 0.25) == pytest.approx(
            0.75, abs=1e-5
        )
    assert await store.take_delivery_slot("rule:r:0", 1.0, 1, T0 + 1.0) == 0.0


async def test_delivery_slot_buckets_are_per_key(store: Store) -> None:
    assert await store.take_delivery_slot("target:wht_a", 1.0, 1, T0) == 0.0
    assert await store.take_delivery_slot("target:wht_a", 1.0, 1, T0) > 0
    assert await store.take_delivery_slot("target:wht_b", 1.0, 1, T0) == 0.0
    assert await store.take_delivery_slot("rule:r:0", 1.0, 1, T0) == 0.0
    assert await store.take_delivery_slot("rule:r:1", 1.0, 1, T0) == 0.0


async def test_defer_hands_a_held_delivery_back_unsent_due_later(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert len(await store.claim_due(T0, 10, held(T0 + 60))) == 1
    assert await store.defer(delivery.id, TOKEN, T0 + 5) is True
    row = await store.get_delivery(delivery.id)
    assert row is not None
    assert (row.status, row.next_attempt_at, row.attempt_count, row.attempts) == (
        "pending",
        T0 + 5,
        0,
        (),
    )
    # the lease is gone (not held until T0 + 60), and it is not due before T0 + 5
    assert await store.has_due(T0 + 4) is False
    assert await store.claim_due(T0 + 4, 10, held(T0 + 64, "b")) == []
    assert await store.has_due(T0 + 5) is True
    claimed = await store.claim_due(T0 + 5, 10, held(T0 + 65, "b"))
    assert [d.id for d in claimed] == [delivery.id]
    assert claimed[0].attempt_count == 0
    # the deferring holder's token fences nothing any more
    late = attempt(T0 + 6, 200)
    assert await store.finish_attempt(delivery.id, late, "succeeded", None, TOKEN) is False
    assert await store.finish_attempt(delivery.id, late, "succeeded", None, "b") is True


async def test_defer_is_fenced_by_the_lease_token(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert len(await store.claim_due(T0, 10, held(T0 + 60, "a"))) == 1
    assert await store.defer(delivery.id, "not-a", T0 + 5) is False
    assert await store.defer("dlv_missing", "a", T0 + 5) is False
    row = await store.get_delivery(delivery.id)
    assert row is not None and row.next_attempt_at == T0
    assert await store.claim_due(T0 + 1, 10, held(T0 + 61, "b")) == []  # still held by a
    # a finished delivery is never deferred back to pending
    assert await store.finish_attempt(delivery.id, attempt(T0, 200), "succeeded", None, "a")
    assert await store.defer(delivery.id, "a", T0 + 5) is False
    row = await store.get_delivery(delivery.id)
    assert row is not None and (row.status, row.next_attempt_at) == ("succeeded", None)


async def test_rate_limits_read_back_on_deliveries_and_targets(store: Store) -> None:
    limit = RateLimit("rule:forward:1", 2.5, 4)
    delivery = await add_with_delivery(store, "app_1", T0, rate_limit=limit)
    plain = await add_with_delivery(store, "app_1", T0 + 0.001)
    row = await store.get_delivery(delivery.id)
    assert row is not None and row.rate_limit == limit
    claimed = {d.id: d for d in await store.claim_due(T0 + 1, 10, held(T0 + 60))}
    assert claimed[delivery.id].rate_limit == limit
    assert claimed[plain.id].rate_limit is None
    target = make_target(T0, rate=0.5, burst=2)
    await store.create_target(target)
    assert await store.get_target(target.id) == target
    unlimited = make_target(T0 + 1)
    await store.create_target(unlimited)
    found = await store.get_target(unlimited.id)
    assert found is not None and (found.rate, found.burst) == (None, None)


async def test_claim_skips_full_hosts_however_many_are_due(store: Store) -> None:
    event = make_event("app_1", T0)
    hung = [
        make_delivery(event.id, T0 + n * 0.001, url="https://Hung.example:8443/hook")
        for n in range(300)
    ]
    healthy = make_delivery(event.id, T0 + 1, url="https://healthy.example/hook")
    await store.add_event(event, [*hung, healthy])
    claimed = await store.claim_due(T0 + 5, 10, held(T0 + 60), skip_hosts=["hung.example:8443"])
    assert [d.id for d in claimed] == [healthy.id]
    rest = await store.claim_due(T0 + 5, 1000, held(T0 + 60))
    assert len(rest) == 300 and {d.url for d in rest} == {hung[0].url}


async def test_release_drops_the_lease(store: Store) -> None:
    delivery = await add_with_delivery(store, "app_1", T0)
    assert len(await store.claim_due(T0, 10, held(T0 + 60))) == 1
    await store.release({delivery.id: TOKEN})
    assert [d.id for d in await store.claim_due(T0 + 1, 10, held(T0 + 61))] == [delivery.id]
    await store.release({})


async def test_failed_since_filters_by_time_and_target(store: Store) -> None:
    old = await add_with_delivery(store, "app_1", T0, target_id="wht_a")
    new_a = await add_with_delivery(store, "app_1", T0 + 10, target_id="wht_a")
    new_b = await add_with_delivery(store, "app_1", T0 + 11, target_id="wht_b")
    fine = await add_with_delivery(store, "app_1", T0 + 12, target_id="wht_a")
    await store.claim_due(T0 + 20, 10, held(T0 + 80))
    for d in (old, new_a, new_b):
        await store.finish_attempt(
            d.id, attempt(T0 + 20, 500, error="HTTP 500"), "failed", None, TOKEN
        )
    await store.finish_attempt(fine.id, attempt(T0 + 20, 200), "succeeded", None, TOKEN)

    assert await store.failed_since(T0 + 5) == [new_a.id, new_b.id]
    assert await store.failed_since(T0) == [old.id, new_a.id, new_b.id]
    assert await store.failed_since(T0 + 5, "wht_a") == [new_a.id]
    assert await store.failed_since(T0 + 100) == []


async def test_list_deliveries_filters_and_cursor(store: Store) -> None:
    e1, e2 = make_event("app_1", T0), make_event("app_1", T0 + 1)
    d = [
        make_delivery(e1.id, T0, rule_id="notify"),
        make_delivery(e1.id, T0 + 0.5, target_id="wht_a"),
        make_delivery(e2.id, T0 + 1, rule_id="notify"),
        make_delivery(e2.id, T0 + 1.5, target_id="wht_a"),
        make_delivery(e2.id, T0 + 2, target_id="wht_b"),
    ]
    await store.add_event(e1, d[:2])
    await store.add_event(e2, d[2:])
    await store.claim_due(T0 + 5, 10, held(T0 + 60))
    await store.finish_attempt(
        d[1].id, attempt(T0 + 5, 500, error="HTTP 500"), "failed", None, TOKEN
    )
    await store.finish_attempt(d[2].id, attempt(T0 + 5, 204), "succeeded", None, TOKEN)

    def ids(items: list[Delivery]) -> list[str]:
        return [x.id for x in items]

    everything = await store.list_deliveries(DeliveryFilter())
    assert ids(everything.data) == ids(d[::-1]) and everything.next_cursor is None
    by_status = await store.list_deliveries(DeliveryFilter(status="pending"))
    assert ids(by_status.data) == [d[4].id, d[3].id, d[0].id]
    by_target = await store.list_deliveries(DeliveryFilter(target_id="wht_a"))
    assert ids(by_target.data) == [d[3].id, d[1].id]
    by_rule = await store.list_deliveries(DeliveryFilter(rule_id="notify"))
    assert ids(by_rule.data) == [d[2].id, d[0].id]
    by_event = await store.list_deliveries(DeliveryFilter(event_id=e1.id))
    assert ids(by_event.data) == [d[1].id, d[0].id]
    since = await store.list_deliveries(DeliveryFilter(since=T0 + 1))
    assert ids(since.data) == [d[4].id, d[3].id, d[2].id]
    both = await store.list_deliveries(DeliveryFilter(status="failed", target_id="wht_a"))
    assert ids(both.data) == [d[1].id]
    assert (await store.list_deliveries(DeliveryFilter(target_id="wht_zzz"))).data == []

    walked: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        page = await store.list_deliveries(DeliveryFilter(), cursor=cursor, limit=2)
        walked += ids(page.data)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor == page.data[-1].id
    assert cursor is None
    assert walked == ids(d[::-1])


async def test_deliveries_for_event_and_count_pending(store: Store) -> None:
    e1, e2 = make_event("app_1", T0), make_event("app_1", T0 + 1)
    one = [make_delivery(e1.id, T0 + i / 100) for i in range(3)]
    two = [make_delivery(e2.id, T0 + 1)]
    await store.add_event(e1, one)
    await store.add_event(e2, two)
    assert await store.deliveries_for_event(e1.id) == one
    assert await store.deliveries_for_event(e2.id) == two
    assert await store.deliveries_for_event("evt_missing") == []
    assert await store.count_pending() == 4
    await store.claim_due(T0 + 1, 10, held(T0 + 60))
    await store.finish_attempt(one[0].id, attempt(T0 + 1, 200), "succeeded", None, TOKEN)
    await store.finish_attempt(one[1].id, attempt(T0 + 1, None, error="x"), "skipped", None, TOKEN)
    assert await store.count_pending() == 2


# retention


async def test_prune_drops_old_events_and_finished_deliveries_but_keeps_pending(
    store: Store,
) -> None:
    old = make_event("app_1", T0)
    done = make_delivery(old.id, T0)
    failed = make_delivery(old.id, T0 + 0.001)
    waiting = make_delivery(old.id, T0 + 0.002, next_attempt_at=T0 + 10_000)
    await store.add_event(old, [done, failed, waiting])
    new = make_event("app_1", T0 + 100)
    new_done = make_delivery(new.id, T0 + 100)
    await store.add_event(new, [new_done])
    await store.claim_due(T0 + 100, 10, held(T0 + 160))
    await store.finish_attempt(done.id, attempt(T0, 200), "succeeded", None, TOKEN)
    await store.finish_attempt(failed.id, attempt(T0, 500, error="HTTP 500"), "failed", None, TOKEN)
    await store.finish_attempt(new_done.id, attempt(T0 + 100, 200), "succeeded", None, TOKEN)

    assert await store.prune(T0 + 50, T0 + 50) == 1

    assert await store.get_event(old.id) is None
    assert await store.get_delivery(done.id) is None
    assert await store.get_delivery(failed.id) is None
    kept = await store.get_delivery(waiting.id)
    assert kept is not None and kept.status == "pending"
    assert await store.get_event(new.id) == new
    assert await store.get_delivery(new_done.id) is not None
    assert await store.count_events() == 1
    assert await store.count_pending() == 1
    assert await store.prune(T0 + 50, T0 + 50) == 0


async def test_prune_forgets_idempotency_keys_older_than_the_cutoff(store: Store) -> None:
    old = make_event("app_1", T0, key="old-key")
    recent = make_event("app_1", T0 + 100, key="recent-key")
    await store.add_event(old, [])
    await store.add_event(recent, [])

    assert await store.prune(T0 - 1, T0 + 50) == 0  # no event is old enough to drop
    assert await store.get_event(old.id) is not None
    assert await store.find_idempotent("app_1", "old-key", 0) is None
    assert await store.find_idempotent("app_1", "recent-key", 0) == recent.id

    reused = make_event("app_1", T0 + 200, key="old-key")
    accepted = await store.add_event(reused, [])
    assert (accepted.event_id, accepted.duplicate) == (reused.id, False)
    assert await store.get_event(reused.id) == reused
    repeat = await store.add_event(make_event("app_1", T0 + 201, key="recent-key"), [])
    assert (repeat.event_id, repeat.duplicate) == (recent.id, True)


async def test_ping_answers_on_an_open_store(store: Store) -> None:
    await store.ping()


# SQLite only: group commit and durability


async def test_sqlite_group_commit_commits_every_concurrent_event_durably(tmp_path: Path) -> None:
    path = tmp_path / "data" / "hookgate.db"
    store = SqliteStore(path, synchronous="full")
    await store.open()
    before = await store.writer_stats()
    events = [make_event("app_1", T0 + i / 1000, key=f"k{i}") for i in range(200)]
    try:
        results = await asyncio.gather(
            *(store.add_event(e, [make_delivery(e.id, e.received_at)]) for e in events)
        )
        after = await store.writer_stats()
    finally:
        await store.close()
    assert [(r.event_id, r.duplicate) for r in results] == [(e.id, False) for e in events]
    transactions, requests = after[0] - before[0], after[1] - before[1]
    assert requests == 200
    assert transactions < 200  # grouped: fewer transactions than events

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.count_events() == 200
        assert await reopened.count_pending() == 200
        for event in events[::37]:
            assert await reopened.get_event(event.id) == event
            assert len(await reopened.deliveries_for_event(event.id)) == 1
        duplicate = await reopened.add_event(make_event("app_1", T0 + 5, key="k7"), [])
        assert (duplicate.event_id, duplicate.duplicate) == (events[7].id, True)
    finally:
        await reopened.close()


async def test_sqlite_a_failing_write_fails_only_its_own_op(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    await store.open()
    taken = make_app("billing")
    await store.create_app(taken)
    before = await store.writer_stats()
    events = [make_event("app_1", T0 + i / 1000) for i in range(50)]
    fresh = make_app("shop")
    try:
        results = await asyncio.gather(
            *(store.add_event(e, [make_delivery(e.id, e.received_at)]) for e in events[:25]),
            store.create_app(make_app("billing")),
            store.create_app(fresh),
            *(store.add_event(e, []) for e in events[25:]),
            return_exceptions=True,
        )
        after = await store.writer_stats()
        # all in one group commit
        assert (after[0] - before[0], after[1] - before[1]) == (1, len(results))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        assert isinstance(results[25], StoreError)
        assert await store.count_events() == 50
        assert await store.count_pending() == 25
        assert await store.list_apps() == sorted([taken, fresh], key=lambda a: a.id)
    finally:
        await store.close()


async def test_sqlite_a_failing_event_fails_only_its_own_op(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    await store.open()
    stored = make_event("app_1", T0)
    await store.add_event(stored, [])
    same_id = dataclasses.replace(make_event("app_1", T0 + 1), id=stored.id)
    others = [make_event("app_1", T0 + 2 + i / 1000) for i in range(20)]
    before = await store.writer_stats()
    try:
        results = await asyncio.gather(
            *(store.add_event(e, [make_delivery(e.id, e.received_at)]) for e in others[:10]),
            store.add_event(same_id, [make_delivery(same_id.id, T0 + 1)]),
            *(store.add_event(e, []) for e in others[10:]),
            return_exceptions=True,
        )
        after = await store.writer_stats()
        # all in one group commit
        assert (after[0] - before[0], after[1] - before[1]) == (1, len(results))
        assert isinstance(results[10], StoreError)
        assert [r.event_id for r in results if not isinstance(r, BaseException)] == [
            e.id for e in others
        ]
        assert await store.count_events() == 21
        assert await store.count_pending() == 10
        assert await store.get_event(stored.id) == stored
    finally:
        await store.close()


async def true_pending(store: SqliteStore) -> int:
    found = await store._read("SELECT count(*) FROM deliveries WHERE status = 'pending'")
    return int(found[0][0])


async def test_sqlite_pending_count_follows_every_status_change(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    await store.open()
    try:
        old, new = make_event("app_1", T0), make_event("app_1", T0 + 100)
        d = [make_delivery(old.id, T0 + i / 1000) for i in range(4)]
        await store.add_event(old, d[:3])
        await store.add_event(new, [])
        await store.add_deliveries([d[3], make_delivery(new.id, T0 + 100, status="failed")])
        counts = [await store.count_pending()]
        await store.claim_due(T0 + 1, 10, held(T0 + 60))  # leased, still pending
        counts.append(await store.count_pending())
        await store.finish_attempt(d[0].id, attempt(T0, 200), "succeeded", None, TOKEN)
        await store.finish_attempt(d[1].id, attempt(T0, 500), "failed", None, TOKEN)
        await store.finish_attempt(d[2].id, attempt(T0, 503), "pending", T0 + 30, TOKEN)  # retry
        counts.append(await store.count_pending())
        await store.requeue([d[0].id, d[1].id], T0 + 2)
        counts.append(await store.count_pending())
        await store.finish_attempt(d[3].id, attempt(T0, None, error="x"), "skipped", None, TOKEN)
        await store.prune(T0 + 50, T0 + 50)  # drops only finished deliveries
        counts.append(await store.count_pending())
        assert counts == [4, 4, 2, 4, 3]
        assert await store.count_pending() == await true_pending(store)
    finally:
        await store.close()


async def test_sqlite_pending_count_of_a_database_from_before_the_count(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.db"
    store = SqliteStore(path, synchronous="normal")
    await store.open()
    event = make_event("app_1", T0)
    await store.add_event(event, [make_delivery(event.id, T0 + i / 1000) for i in range(3)])
    await store.close()
    with sqlite3.connect(path) as conn:  # as an older version left it
        for name in ("added", "removed", "changed"):
            conn.execute(f"DROP TRIGGER deliveries_pending_{name}")
        conn.execute("DELETE FROM meta WHERE key = 'pending_deliveries'")
    conn.close()

    reopened = SqliteStore(path, synchronous="normal")
    await reopened.open()
    try:
        assert await reopened.count_pending() == 3
        await reopened.add_deliveries([make_delivery(event.id, T0 + 1)])
        assert await reopened.count_pending() == 4 == await true_pending(reopened)
    finally:
        await reopened.close()


def test_sqlite_prune_reads_old_events_by_key_not_every_event(tmp_path: Path) -> None:
    # A table scan here held the single writer for seconds on a large database, hourly
    # and at every start, and every ingest commit waited behind it.
    conn = sqlite_writer.connect(str(tmp_path / "hookgate.db"), "normal")
    rows = [sqlite_rows.event_row(make_event("app_1", T0 + 10 + i / 1000)) for i in range(5000)]
    old = [sqlite_rows.event_row(make_event("app_1", T0 + i / 1000)) for i in range(3)]
    sqlite_writer.add_events(conn, [(row, [], []) for row in old + rows], 86400)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 100)
    dropped = sqlite_writer.prune(conn, T0 + 5, T0 + 5, id_floor("evt_", T0 + 5), 2000)
    conn.set_progress_handler(None, 0)
    assert dropped == 3
    assert steps < 20, f"{steps * 100} SQLite steps: prune walked the table"
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5000
    conn.close()


async def test_sqlite_prune_drops_a_backlog_in_short_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "PRUNE_CHUNK", 3)
    store = SqliteStore(tmp_path / "hookgate.db", synchronous="normal")
    await store.open()
    try:
        for i in range(10):
            await store.add_event(make_event("app_1", T0 + i), [])
        await store.add_event(make_event("app_1", T0 + 100), [])
        before = await store.writer_stats()
        assert await store.prune(T0 + 50, T0 + 50) == 10
        after = await store.writer_stats()
        assert after[0] - before[0] >= 4  # 3 + 3 + 3 + 1
        assert await store.count_events() == 1
    finally:
        await store.close()


async def test_sqlite_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hookgate.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.add_event(make_event("app_1", T0), [])
    with pytest.raises(StoreError):
        await store.ping()


# Redis only: several processes (here: several store instances) on one Redis


@pytest.fixture
async def redis_pair(redis_url: dict[str, Any]) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one Redis and one key prefix, as two gateway processes would be."""
    stores = (
        RedisStore(redis_url["url"], key_prefix=redis_url["prefix"]),
        RedisStore(redis_url["url"], key_prefix=redis_url["prefix"]),
    )
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


@pytest.mark.redis
async def test_redis_processes_racing_on_one_idempotency_key_store_one_event(
    redis_pair: tuple[RedisStore, RedisStore],
) -> None:
    events = [make_event("app_1", T0 + i / 1000, key="same") for i in range(40)]
    results = await asyncio.gather(
        *(
            redis_pair[i % 2].add_event(e, [make_delivery(e.id, e.received_at)])
            for i, e in enumerate(events)
        )
    )
    winners = {r.event_id for r in results if not r.duplicate}
    assert len(winners) == 1
    assert {r.event_id for r in results} == winners
    for s in redis_pair:
        assert await s.count_events() == 1
        assert await s.count_pending() == 1
        assert await s.find_idempotent("app_1", "same", T0 - 1) in winners


@pytest.mark.redis
async def test_redis_processes_never_claim_one_delivery_twice(
    redis_pair: tuple[RedisStore, RedisStore],
) -> None:
    one, two = redis_pair
    event = make_event("app_1", T0)
    queued = [make_delivery(event.id, T0 + i / 1000) for i in range(60)]
    await one.add_event(event, queued)
    claims = await asyncio.gather(
        *(redis_pair[i % 2].claim_due(T0 + 1, 7, held(T0 + 60)) for i in range(12))
    )
    claimed = [d.id for batch in claims for d in batch]
    assert sorted(claimed) == sorted(d.id for d in queued)  # each once, none left out
    assert await two.claim_due(T0 + 30, 100, held(T0 + 90)) == []
    # a process that died holding leases: another one takes its rows when they run out
    taken_over = await two.claim_due(T0 + 60, 100, held(T0 + 120))
    assert sorted(d.id for d in taken_over) == sorted(d.id for d in queued)


@pytest.mark.redis
async def test_redis_writes_seen_by_another_process(
    redis_pair: tuple[RedisStore, RedisStore],
) -> None:
    one, two = redis_pair
    version = await two.apps_version()
    app = make_app("billing")
    await one.create_app(app)
    assert await two.apps_version() != version
    assert await two.find_app("billing") == app
    with pytest.raises(StoreError):
        await two.create_app(make_app("billing"))

    target = make_target(T0)
    await one.create_target(target)
    await one.record_target_outcome(target.id, False, 1)
    seen = await two.get_target(target.id)
    assert seen is not None and (seen.status, seen.consecutive_failures) == ("disabled", 1)

    delivery = await add_with_delivery(one, app.id, T0)
    [claimed] = await two.claim_due(T0, 10, held(T0 + 60))
    await two.finish_attempt(claimed.id, attempt(T0, 200), "succeeded", None, TOKEN)
    done = await one.get_delivery(delivery.id)
    assert done is not None and done.status == "succeeded" and len(done.attempts) == 1


@pytest.mark.redis
async def test_redis_a_resent_write_applies_once(redis_pair: tuple[RedisStore, RedisStore]) -> None:
    """redis-py resends a command when the connection drops: the answer may have been lost
    after the script ran, so the same call arrives twice."""
    store = redis_pair[0]
    event = make_event("app_1", T0, key="k")
    delivery = make_delivery(event.id, T0)
    assert await store.add_event(event, [delivery]) == await store.add_event(event, [delivery])
    assert (await store.add_event(event, [delivery])).duplicate is False
    assert await store.count_events() == 1 and await store.count_pending() == 1

    await store.claim_due(T0, 10, held(T0 + 60))
    failed = attempt(T0, 503, error="HTTP 503")
    for _ in range(2):
        await store.finish_attempt(delivery.id, failed, "pending", T0 + 5, TOKEN)
    stored = await store.get_delivery(delivery.id)
    assert stored is not None and (stored.attempt_count, stored.attempts) == (1, (failed,))

    app = make_app("billing")
    await store.create_app(app)
    await store.create_app(app)
    assert await store.list_apps() == [app]


@pytest.mark.redis
async def test_redis_an_idempotency_key_passes_on_after_its_ttl(redis_url: dict[str, Any]) -> None:
    """Judged by the events' own times (not by when Redis stored the key), before any
    pruning."""
    store = RedisStore(redis_url["url"], key_prefix=redis_url["prefix"], idempotency_ttl=100)
    await store.open()
    try:
        first = make_event("app_1", T0, key="k")
        await store.add_event(first, [])
        within = await store.add_event(make_event("app_1", T0 + 100, key="k"), [])
        assert (within.event_id, within.duplicate) == (first.id, True)
        later = make_event("app_1", T0 + 100.5, key="k")
        accepted = await store.add_event(later, [make_delivery(later.id, T0 + 100.5)])
        assert (accepted.event_id, accepted.duplicate) == (later.id, False)
        assert await store.find_idempotent("app_1", "k", T0 + 0.5) == later.id
        again = await store.add_event(make_event("app_1", T0 + 101, key="k"), [])
        assert (again.event_id, again.duplicate) == (later.id, True)
        assert await store.count_events() == 2 and await store.count_pending() == 1
        # pruning the first event leaves the key with its new owner
        assert await store.prune(T0 + 50, T0 + 50) == 1
        assert await store.find_idempotent("app_1", "k", T0) == later.id
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_prune_leaves_no_keys_of_what_it_dropped(redis_url: dict[str, Any]) -> None:
    import redis.asyncio as aioredis

    store = RedisStore(redis_url["url"], key_prefix=redis_url["prefix"])
    await store.open()
    client = aioredis.Redis.from_url(redis_url["url"])
    try:
        event = make_event("app_1", T0, key="k", event_type="order.paid")
        done = make_delivery(event.id, T0, target_id="wht_1", rule_id="r1")
        await store.add_event(event, [done])
        await store.claim_due(T0, 10, held(T0 + 60))
        await store.finish_attempt(done.id, attempt(T0, 200), "succeeded", None, TOKEN)
        assert await store.prune(T0 + 1, T0 + 1) == 1
        left = sorted(
            k.decode() for k in await client.keys(keys.store_tag(redis_url["prefix"]) + "*")
        )
        assert left == []
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.redis
async def test_redis_errors_are_store_errors(redis_url: dict[str, Any]) -> None:
    unreachable = RedisStore("redis://127.0.0.1:1/0", key_prefix=redis_url["prefix"])
    with pytest.raises(StoreError):
        await unreachable.open()
    store = RedisStore(redis_url["url"], key_prefix=redis_url["prefix"])
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.add_event(make_event("app_1", T0), [])
    with pytest.raises(StoreError):
        await store.ping()


async def test_bodies_survive_every_write_path_byte_for_byte(store: Store) -> None:
    """Rendered bodies and event payloads come back exactly, non-ASCII included, whether
    they were written with their event, added later, claimed or read back."""
    payload = '{"name":"Zoë","emoji":"🎉","n":1.50}'.encode()
    event = dataclasses.replace(make_event("app_1", T0), payload=payload)
    with_event = make_delivery(event.id, T0, body='{"to":"José"}'.encode())
    later = make_delivery(event.id, T0 + 1, body=b'{"raw":"\\u00e9"}')
    await store.add_event(event, [with_event])
    await store.add_deliveries([later])
    assert (await store.get_event(event.id)) == event
    assert [e.payload for e in await store.get_events([event.id])] == [payload]
    for delivery in (with_event, later):
        stored = await store.get_delivery(delivery.id)
        assert stored is not None and stored.body == delivery.body
    claimed = await store.claim_due(T0 + 10, 10, held(T0 + 70))
    assert {d.id: d.body for d in claimed} == {
        with_event.id: with_event.body,
        later.id: later.body,
    }

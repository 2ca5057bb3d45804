"""Failure alerts as internal events (`gateway.delivery.alerts`): what is emitted, which
rules receive it, and the cases that must emit nothing (no loops)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from actions import Attempt, Delivery, Lease
from gateway.delivery.alerts import (
    DELIVERY_FAILED,
    INTERNAL_APP,
    INTERNAL_APP_ID,
    TARGET_DISABLED,
    Alerts,
)
from gateway.errors import StoreError
from gateway.models import Event, WebhookTarget
from gateway.records.shapes import delivery_json, target_json
from gateway.store.base import Accepted
from gateway.store.memory import MemoryStore
from rules import Action, Rule, RuleSet

ALERTS_URL = "http://127.0.0.1:9/alerts"
CRM_URL = "http://127.0.0.1:9/crm"


def _alert_rule(rule_id: str = "page-ops", *event_types: str) -> Rule:
    return Rule(
        rule_id,
        apps=frozenset({INTERNAL_APP}),
        event_types=frozenset(event_types),
        actions=(Action(type="webhook", url=ALERTS_URL),),
    )


CATCH_ALL = Rule("everything", actions=(Action(type="forward", url=CRM_URL),))
TARGET_RULE = Rule.for_target("wht_crm", CRM_URL)


class Recorder:
    """Counts wakes: the dispatcher is told to claim the alert's deliveries now."""

    def __init__(self) -> None:
        self.wakes = 0

    def __call__(self) -> None:
        self.wakes += 1


@pytest.fixture
async def store() -> MemoryStore:
    memory = MemoryStore()
    await memory.open()
    return memory


async def _failed_delivery(store: MemoryStore, app_id: str = "app_crm") -> Delivery:
    """An event of `app_id` with one delivery that failed for good."""
    now = time.time()
    event = Event(f"evt_{app_id}", app_id, "job.done", now, b'{"job": 1}')
    delivery = Delivery(
        id=f"dlv_{app_id}", event_id=event.id, action_type="webhook", url=CRM_URL, created_at=now
    )
    lease = Lease.new(now + 60)
    await store.add_event(event, [delivery], lease)
    attempt = Attempt(
        at=now, status_code=500, latency_ms=1.0, error="HTTP 500", response_excerpt=""
    )
    assert await store.finish_attempt(delivery.id, attempt, "failed", None, lease.token)
    stored = await store.get_delivery(delivery.id)
    assert stored is not None and stored.status == "failed"
    return stored


async def _internal_events(store: MemoryStore) -> list[Event]:
    return (await store.list_events(app_id=INTERNAL_APP_ID)).data


async def test_a_delivery_that_failed_for_good_becomes_a_delivery_failed_event(
    store: MemoryStore,
) -> None:
    failed = await _failed_delivery(store)
    wake = Recorder()
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("page-ops", DELIVERY_FAILED)]), wake=wake)

    assert await alerts.delivery_failed(failed.id) is False  # not an internal event's

    (event,) = await _internal_events(store)
    assert event.event_type == DELIVERY_FAILED
    assert event.matched_rules == ("page-ops",)
    payload = orjson.loads(event.payload)
    assert payload["event_type"] == DELIVERY_FAILED
    assert payload["data"] == orjson.loads(orjson.dumps(delivery_json(failed)))
    assert payload["data"]["attempts"][0]["status_code"] == 500
    (planned,) = await store.deliveries_for_event(event.id)
    assert (planned.url, planned.rule_id, planned.status) == (ALERTS_URL, "page-ops", "pending")
    assert wake.wakes == 1


async def test_a_disabled_target_becomes_a_target_disabled_event_without_its_secret(
    store: MemoryStore,
) -> None:
    target = WebhookTarget(
        id="wht_crm",
        url=CRM_URL,
        secret="whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw==",
        status="disabled",
        consecutive_failures=3,
        created_at=1.0,
        updated_at=2.0,
    )
    wake = Recorder()
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("page-ops", TARGET_DISABLED)]), wake=wake)

    await alerts.target_disabled(target)

    (event,) = await _internal_events(store)
    assert event.event_type == TARGET_DISABLED
    assert target.secret.encode() not in event.payload
    payload = orjson.loads(event.payload)
    assert payload == {"event_type": TARGET_DISABLED, "data": target_json(target)}
    assert "secret" not in payload["data"]
    assert payload["data"]["status"] == "disabled"
    assert len(await store.deliveries_for_event(event.id)) == 1
    assert wake.wakes == 1


async def test_only_rules_that_name_the_hookgate_app_receive_alerts(store: MemoryStore) -> None:
    """A catch-all rule and a webhook target (no app list) match every app's events, but
    must not start receiving hookgate's own alerts."""
    failed = await _failed_delivery(store)
    wake = Recorder()
    rules = RuleSet([CATCH_ALL, TARGET_RULE, _alert_rule("page-ops")])
    alerts = Alerts(store, lambda: rules, wake=wake)

    await alerts.delivery_failed(failed.id)

    (event,) = await _internal_events(store)
    assert event.matched_rules == ("page-ops",)
    urls = [d.url for d in await store.deliveries_for_event(event.id)]
    assert urls == [ALERTS_URL]


async def test_an_alert_no_rule_routes_is_still_stored_and_wakes_nobody(
    store: MemoryStore,
) -> None:
    failed = await _failed_delivery(store)
    wake = Recorder()
    alerts = Alerts(store, lambda: RuleSet([CATCH_ALL, TARGET_RULE]), wake=wake)

    await alerts.delivery_failed(failed.id)

    (event,) = await _internal_events(store)  # shows in /v1/events like the rest
    assert event.matched_rules == ()
    assert await store.deliveries_for_event(event.id) == []
    assert wake.wakes == 0


async def test_a_rule_for_the_other_alert_type_does_not_match(store: MemoryStore) -> None:
    failed = await _failed_delivery(store)
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("targets-only", TARGET_DISABLED)]))

    await alerts.delivery_failed(failed.id)

    (event,) = await _internal_events(store)
    assert event.event_type == DELIVERY_FAILED
    assert event.matched_rules == ()


async def test_a_failed_delivery_of_an_internal_event_emits_nothing(store: MemoryStore) -> None:
    """No loops: an alert whose own delivery fails raises no alert about it."""
    failed = await _failed_delivery(store, app_id=INTERNAL_APP_ID)
    wake = Recorder()
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("page-ops")]), wake=wake)

    # True: the caller must keep quiet about the target this delivery may disable too.
    assert await alerts.delivery_failed(failed.id) is True

    events = await _internal_events(store)
    assert [e.id for e in events] == [failed.event_id]  # only the original alert event
    assert wake.wakes == 0


async def test_an_unknown_delivery_or_a_pruned_event_emits_nothing(store: MemoryStore) -> None:
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("page-ops")]))
    assert await alerts.delivery_failed("dlv_unknown") is False
    orphan = Delivery(id="dlv_orphan", event_id="evt_pruned", action_type="webhook", url=CRM_URL)
    await store.add_deliveries([orphan])
    assert await alerts.delivery_failed(orphan.id) is False
    assert await _internal_events(store) == []


class RefusingStore(MemoryStore):
    """A store whose event writes fail (a full disk, a lost connection)."""

    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        raise StoreError("disk I/O error")


async def test_an_alert_that_cannot_be_stored_is_logged_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RefusingStore()
    await store.open()
    wake = Recorder()
    alerts = Alerts(store, lambda: RuleSet([_alert_rule("page-ops")]), wake=wake)
    target = WebhookTarget(id="wht_x", url=CRM_URL, secret="whsec_eA==", status="disabled")

    with caplog.at_level(logging.ERROR, logger="hookgate.alerts"):
        assert await alerts.emit(TARGET_DISABLED, target_json(target)) is None
        await alerts.target_disabled(target)  # does not raise either

    messages = [r.getMessage() for r in caplog.records if r.name == "hookgate.alerts"]
    assert messages == [f"internal event {TARGET_DISABLED} not stored: disk I/O error"] * 2
    assert wake.wakes == 0


async def test_emit_returns_the_stored_event_id_and_reads_the_live_rule_set(
    store: MemoryStore,
) -> None:
    """The rules are read at each alert, so a reload routes the next alert differently."""
    current: dict[str, Any] = {"rules": RuleSet([])}
    alerts = Alerts(store, lambda: current["rules"])
    record: dict[str, object] = {"id": "wht_x"}

    first = await alerts.emit(TARGET_DISABLED, record)
    current["rules"] = RuleSet([_alert_rule("page-ops", TARGET_DISABLED)])
    second = await alerts.emit(TARGET_DISABLED, record)

    assert first is not None and second is not None and first != second
    assert first.startswith("evt_")
    stored_first, stored_second = await store.get_event(first), await store.get_event(second)
    assert stored_first is not None and stored_first.app_id == INTERNAL_APP_ID
    assert stored_first.matched_rules == ()
    assert stored_second is not None and stored_second.matched_rules == ("page-ops",)

"""The dispatcher wired to the store (`gateway.delivery.wiring`): a real `MemoryStore`, the
real HTTP client and a real loopback sink (aiohttp on 127.0.0.1, port 0). Outcomes are
recorded, targets count their final outcomes and are disabled with one alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from actions import (
    Attempt,
    Delivery,
    Dispatcher,
    DispatchSettings,
    EventInfo,
    Lease,
    TargetInfo,
    Verifier,
    envelope,
)
from gateway.config import Settings, load_settings
from gateway.delivery.alerts import (
    DELIVERY_FAILED,
    INTERNAL_APP,
    INTERNAL_APP_ID,
    TARGET_DISABLED,
    Alerts,
)
from gateway.delivery.wiring import (
    StoreSource,
    address_policy,
    build_http_client,
    dispatch_settings,
)
from gateway.models import Event, WebhookTarget
from gateway.store.memory import MemoryStore
from gateway.version import __version__
from rules import Action, Rule, RuleSet

OPEN = load_settings(env={}, delivery={"allow_private_targets": True, "timeout_seconds": 5})
SECRET = "whsec_dGhlLWNybS10YXJnZXQtc2lnbmluZy1zZWNyZXQ="
ALERT_RULE = Rule(
    "page-ops",
    apps=frozenset({INTERNAL_APP}),
    actions=(Action(type="webhook", url="http://127.0.0.1:9/alerts"),),
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    """A real HTTP server on a free loopback port; answers each path with its status."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(request.path, headers, body))
        return web.Response(status=self.status.get(request.path, 200), text="thanks")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    received = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", received.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    received.port = runner.addresses[0][1]
    yield received
    await runner.cleanup()


class Wiring:
    """A `StoreSource` as the server builds it: a view of targets refreshed when one is
    disabled, app names, alerts through a live rule set; plus a dispatcher over it."""

    def __init__(self, store: MemoryStore, settings: Settings = OPEN) -> None:
        self.store = store
        self.view: dict[str, WebhookTarget] = {}
        self.refreshes = 0
        self.wakes = 0
        self.alerts = Alerts(store, lambda: RuleSet([ALERT_RULE]), wake=self._wake)
        self.source = StoreSource(
            store,
            targets=lambda: self.view,
            app_name=lambda app_id: {"app_crm": "crm"}.get(app_id, app_id),
            on_target_disabled=self.refresh,
            alerts=self.alerts,
        )
        self.client = build_http_client(settings)
        self.dispatcher = Dispatcher(self.source, self.client, dispatch_settings(settings), env={})

    def _wake(self) -> None:
        self.wakes += 1

    async def refresh(self) -> None:
        self.refreshes += 1
        self.view = {t.id: t for t in await self.store.list_targets()}

    async def add_target(self, target: WebhookTarget) -> None:
        await self.store.create_target(target)
        await self.refresh()
        self.refreshes = 0

    async def accept(
        self, n: int, url: str, *, app_id: str = "app_crm", **fields: Any
    ) -> tuple[Delivery, Lease]:
        """One event and its delivery, committed under a lease (as ingest hands it over)."""
        now = time.time()
        event = Event(f"evt_{n:04d}", app_id, "job.done", now, b'{"job": {"id": 7}}')
        delivery = Delivery(
            id=f"dlv_{n:04d}",
            event_id=event.id,
            action_type="webhook",
            url=url,
            created_at=now,
            next_attempt_at=now,
            **fields,
        )
        lease = Lease.new(now + 60)
        await self.store.add_event(event, [delivery], lease)
        return delivery, lease

    async def alerts_of(self, event_type: str) -> list[dict[str, Any]]:
        page = await self.store.list_events(app_id=INTERNAL_APP_ID, event_type=event_type)
        return [orjson.loads(e.payload)["data"] for e in page.data]

    async def close(self) -> None:
        await self.dispatcher.stop()
        await self.client.aclose()


@pytest.fixture
async def wiring() -> AsyncIterator[Wiring]:
    store = MemoryStore()
    await store.open()
    wired = Wiring(store)
    yield wired
    await wired.close()


def _target(url: str, **fields: Any) -> WebhookTarget:
    return WebhookTarget(
        **{"id": "wht_crm", "url": url, "secret": SECRET, "created_at": 1.0, **fields}
    )


async def test_a_target_delivery_is_sent_signed_and_its_outcome_recorded(
    wiring: Wiring, sink: Sink
) -> None:
    await wiring.add_target(_target(sink.url("/crm"), consecutive_failures=2))
    delivery, lease = await wiring.accept(1, sink.url("/crm"), target_id="wht_crm")

    attempt, status = await wiring.dispatcher.deliver(delivery, lease=lease)

    assert (attempt.status_code, status) == (200, "succeeded")
    (request,) = sink.received
    event = await wiring.store.get_event(delivery.event_id)
    assert event is not None
    # The envelope names the app by name (the source's view), the data byte for byte.
    info = EventInfo(event.id, "job.done", "crm", event.received_at, event.payload)
    assert request.body == envelope(info)
    assert request.headers["webhook-id"] == delivery.id
    assert request.headers["user-agent"] == f"hookgate/{__version__}"
    Verifier(SECRET).verify(request.headers, request.body, now=time.time())
    stored = await wiring.store.get_delivery(delivery.id)
    assert stored is not None and stored.status == "succeeded"
    assert [a.status_code for a in stored.attempts] == [200]
    target = await wiring.store.get_target("wht_crm")
    assert target is not None and target.consecutive_failures == 0  # a success resets it
    assert await wiring.alerts_of(DELIVERY_FAILED) == []


async def test_a_retryable_failure_stays_pending_and_counts_nothing_against_the_target(
    wiring: Wiring, sink: Sink
) -> None:
    sink.status["/crm"] = 503
    await wiring.add_target(_target(sink.url("/crm"), disable_after=1))
    delivery, lease = await wiring.accept(1, sink.url("/crm"), target_id="wht_crm", retry=(60.0,))

    attempt, status = await wiring.dispatcher.deliver(delivery, lease=lease)

    assert (attempt.status_code, status) == (503, "pending")
    stored = await wiring.store.get_delivery(delivery.id)
    assert stored is not None and stored.status == "pending" and stored.attempt_count == 1
    assert stored.next_attempt_at is not None and stored.next_attempt_at > time.time() + 30
    target = await wiring.store.get_target("wht_crm")
    assert target is not None and (target.status, target.consecutive_failures) == ("active", 0)
    assert await wiring.alerts_of(DELIVERY_FAILED) == []


async def test_consecutive_final_failures_disable_the_target_with_one_alert(
    wiring: Wiring, sink: Sink
) -> None:
    sink.status["/crm"] = 500
    await wiring.add_target(_target(sink.url("/crm"), disable_after=2))

    first, lease = await wiring.accept(1, sink.url("/crm"), target_id="wht_crm")
    assert (await wiring.dispatcher.deliver(first, lease=lease))[1] == "failed"
    target = await wiring.store.get_target("wht_crm")
    assert target is not None and (target.status, target.consecutive_failures) == ("active", 1)
    assert [a["id"] for a in await wiring.alerts_of(DELIVERY_FAILED)] == [first.id]
    assert await wiring.alerts_of(TARGET_DISABLED) == []
    assert wiring.refreshes == 0

    second, lease = await wiring.accept(2, sink.url("/crm"), target_id="wht_crm")
    assert (await wiring.dispatcher.deliver(second, lease=lease))[1] == "failed"
    target = await wiring.store.get_target("wht_crm")
    assert target is not None and (target.status, target.consecutive_failures) == ("disabled", 2)
    failed = await wiring.alerts_of(DELIVERY_FAILED)
    assert sorted(a["id"] for a in failed) == [first.id, second.id]
    (disabled,) = await wiring.alerts_of(TARGET_DISABLED)
    assert (disabled["id"], disabled["status"]) == ("wht_crm", "disabled")
    assert "secret" not in disabled
    assert wiring.refreshes == 1  # the owner of the view was told
    assert wiring.view["wht_crm"].status == "disabled"
    assert wiring.wakes == 3  # each alert's delivery is claimed now

    # A disabled target is not sent to: its next delivery is held, nothing reaches the sink.
    third, lease = await wiring.accept(3, sink.url("/crm"), target_id="wht_crm")
    attempt, status = await wiring.dispatcher.deliver(third, lease=lease)
    assert status == "held" and attempt.error == "target is disabled: delivery held"
    stored = await wiring.store.get_delivery(third.id)
    assert stored is not None and (stored.status, stored.attempts) == ("held", ())
    assert len(sink.received) == 2


async def test_a_410_disables_its_target_at_once_without_retrying(
    wiring: Wiring, sink: Sink
) -> None:
    sink.status["/gone"] = 410
    await wiring.add_target(_target(sink.url("/gone"), disable_after=None))
    delivery, lease = await wiring.accept(
        1, sink.url("/gone"), target_id="wht_crm", retry=(1.0, 2.0)
    )

    attempt, status = await wiring.dispatcher.deliver(delivery, lease=lease)

    assert (attempt.status_code, status) == (410, "failed")
    target = await wiring.store.get_target("wht_crm")
    assert target is not None and target.status == "disabled"
    assert len(await wiring.alerts_of(TARGET_DISABLED)) == 1


async def test_a_success_after_failures_resets_the_count(wiring: Wiring, sink: Sink) -> None:
    await wiring.add_target(_target(sink.url("/crm"), disable_after=2))
    sink.status["/crm"] = 500
    first, lease = await wiring.accept(1, sink.url("/crm"), target_id="wht_crm")
    await wiring.dispatcher.deliver(first, lease=lease)
    sink.status["/crm"] = 200
    second, lease = await wiring.accept(2, sink.url("/crm"), target_id="wht_crm")
    await wiring.dispatcher.deliver(second, lease=lease)
    sink.status["/crm"] = 500
    third, lease = await wiring.accept(3, sink.url("/crm"), target_id="wht_crm")
    await wiring.dispatcher.deliver(third, lease=lease)

    target = await wiring.store.get_target("wht_crm")
    assert target is not None and (target.status, target.consecutive_failures) == ("active", 1)
    assert await wiring.alerts_of(TARGET_DISABLED) == []


async def test_an_internal_events_failures_disable_its_target_without_any_alert(
    wiring: Wiring, sink: Sink
) -> None:
    """No loops: an alert's own failed delivery raises no alert, nor does the target it
    disables."""
    sink.status["/ops"] = 500
    await wiring.add_target(_target(sink.url("/ops"), disable_after=1))
    delivery, lease = await wiring.accept(
        1, sink.url("/ops"), app_id=INTERNAL_APP_ID, target_id="wht_crm"
    )

    assert (await wiring.dispatcher.deliver(delivery, lease=lease))[1] == "failed"

    target = await wiring.store.get_target("wht_crm")
    assert target is not None and target.status == "disabled"
    assert wiring.refreshes == 1
    assert await wiring.alerts_of(DELIVERY_FAILED) == []
    assert await wiring.alerts_of(TARGET_DISABLED) == []
    (request,) = sink.received
    assert orjson.loads(request.body)["app"] == INTERNAL_APP  # named, not the app id


async def test_an_ordinary_failure_after_an_internal_one_alerts_again(
    wiring: Wiring, sink: Sink
) -> None:
    """The no-loop guard holds for the internal delivery only, not for those after it."""
    sink.status["/ops"] = 500
    sink.status["/crm"] = 500
    internal, lease = await wiring.accept(1, sink.url("/ops"), app_id=INTERNAL_APP_ID)
    await wiring.dispatcher.deliver(internal, lease=lease)
    await wiring.add_target(_target(sink.url("/crm"), disable_after=1))
    ordinary, lease = await wiring.accept(2, sink.url("/crm"), target_id="wht_crm")
    await wiring.dispatcher.deliver(ordinary, lease=lease)

    assert [a["id"] for a in await wiring.alerts_of(DELIVERY_FAILED)] == [ordinary.id]
    assert [a["id"] for a in await wiring.alerts_of(TARGET_DISABLED)] == ["wht_crm"]


async def test_a_target_disabled_by_an_ordinary_delivery_alerts_whatever_finished_between(
    wiring: Wiring,
) -> None:
    await wiring.add_target(_target("http://127.0.0.1:9/crm", disable_after=1))
    ordinary, lease_a = await wiring.accept(1, "http://127.0.0.1:9/crm", target_id="wht_crm")
    internal, lease_b = await wiring.accept(2, "http://127.0.0.1:9/ops", app_id=INTERNAL_APP_ID)
    failure = Attempt(
        at=time.time(), status_code=500, latency_ms=1.0, error="HTTP 500", response_excerpt=""
    )
    source = wiring.source

    # The order the host answers a worker's requests in, when two deliveries end together.
    assert await source.finish_attempt(ordinary.id, failure, "failed", None, lease_a.token)
    assert await source.finish_attempt(internal.id, failure, "failed", None, lease_b.token)
    await source.target_outcome("wht_crm", False, 1, False)

    target = await wiring.store.get_target("wht_crm")
    assert target is not None and target.status == "disabled"
    assert [a["id"] for a in await wiring.alerts_of(TARGET_DISABLED)] == ["wht_crm"]


async def test_a_target_the_view_already_shows_disabled_raises_no_second_alert(
    wiring: Wiring,
) -> None:
    await wiring.add_target(_target("http://127.0.0.1:9/crm", status="disabled"))

    await wiring.source.target_outcome("wht_crm", False, 1, False)

    assert await wiring.alerts_of(TARGET_DISABLED) == []
    assert wiring.refreshes == 1


async def test_a_rule_action_failure_alerts_but_touches_no_target(
    wiring: Wiring, sink: Sink
) -> None:
    sink.status["/rule"] = 500
    delivery, lease = await wiring.accept(1, sink.url("/rule"), rule_id="forward-crm")

    assert (await wiring.dispatcher.deliver(delivery, lease=lease))[1] == "failed"

    (alert,) = await wiring.alerts_of(DELIVERY_FAILED)
    assert (alert["id"], alert["rule_id"], alert["status"]) == (
        delivery.id,
        "forward-crm",
        "failed",
    )
    assert alert["attempts"][0]["status_code"] == 500
    assert await wiring.alerts_of(TARGET_DISABLED) == []
    assert wiring.refreshes == 0


async def test_a_target_newer_than_the_view_is_read_from_the_store(wiring: Wiring) -> None:
    await wiring.store.create_target(_target("http://127.0.0.1:9/crm", disable_after=4))
    assert wiring.view == {}
    assert await wiring.source.target("wht_crm") == TargetInfo(SECRET, True, 4)
    await wiring.store.save_target(_target("http://127.0.0.1:9/crm", status="disabled"))
    assert await wiring.source.target("wht_crm") == TargetInfo(SECRET, False, 3)
    assert await wiring.source.target("wht_missing") is None


async def test_the_view_answers_before_the_store(wiring: Wiring) -> None:
    """The in-memory view is what the server keeps fresh; it is read first (no store read
    per delivery)."""
    await wiring.store.create_target(_target("http://127.0.0.1:9/crm"))
    wiring.view = {"wht_crm": _target("http://127.0.0.1:9/crm", secret="whsec_dmlldw==")}
    info = await wiring.source.target("wht_crm")
    assert info is not None and info.secret == "whsec_dmlldw=="


async def test_events_carry_the_app_name_and_internal_events_the_hookgate_name(
    wiring: Wiring,
) -> None:
    ordinary, _ = await wiring.accept(1, "http://127.0.0.1:9/a")
    internal, _ = await wiring.accept(2, "http://127.0.0.1:9/b", app_id=INTERNAL_APP_ID)
    one = await wiring.source.event_info(ordinary.event_id)
    assert one is not None and (one.app, one.type, one.payload) == (
        "crm",
        "job.done",
        b'{"job": {"id": 7}}',
    )
    both = await wiring.source.event_infos([ordinary.event_id, internal.event_id, "evt_gone"])
    assert sorted((e.id, e.app) for e in both) == [
        (ordinary.event_id, "crm"),
        (internal.event_id, INTERNAL_APP),
    ]
    assert await wiring.source.event_info("evt_gone") is None


async def test_claim_renew_and_release_reach_the_store_under_the_lease(wiring: Wiring) -> None:
    store = wiring.store
    now = time.time()
    await store.add_event(
        Event("evt_1", "app_crm", "x", now, b"{}"),
        [
            Delivery(
                id="dlv_1",
                event_id="evt_1",
                action_type="webhook",
                url="http://h/",
                created_at=now,
                next_attempt_at=now,
            )
        ],
    )
    source = wiring.source
    assert await source.has_due(now + 1)
    lease = Lease.new(now + 60)
    (claimed,) = await source.claim_due(now + 1, 10, lease)
    assert claimed.id == "dlv_1"
    assert not await source.has_due(now + 1)  # leased
    assert await source.renew({"dlv_1": "not-our-token"}, now + 120) == []
    assert await source.renew({"dlv_1": lease.token}, now + 120) == ["dlv_1"]
    await source.release({"dlv_1": lease.token})
    assert await source.has_due(now + 1)  # handed back: claimable at once


async def test_the_polling_dispatcher_claims_sends_and_records(wiring: Wiring, sink: Sink) -> None:
    """The path a worker takes: poll, claim under a fresh lease, send, record."""
    now = time.time()
    delivery = Delivery(
        id="dlv_poll",
        event_id="evt_poll",
        action_type="forward",
        url=sink.url("/forward"),
        created_at=now,
        next_attempt_at=now,
    )
    await wiring.store.add_event(
        Event("evt_poll", "app_crm", "job.done", now, b'{"a": 1}'), [delivery]
    )
    wiring.dispatcher.start()
    wiring.dispatcher.wake()

    deadline = time.monotonic() + 20
    while True:
        stored = await wiring.store.get_delivery("dlv_poll")
        assert stored is not None
        if stored.status != "pending" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)

    assert stored.status == "succeeded"
    (request,) = sink.received
    assert orjson.loads(request.body) == {"eventType": "job.done", "a": 1}


async def test_without_private_targets_a_loopback_url_is_refused_before_sending(
    sink: Sink,
) -> None:
    store = MemoryStore()
    await store.open()
    guarded = load_settings(env={}, delivery={"allow_private_targets": False})
    wired = Wiring(store, guarded)
    try:
        delivery, lease = await wired.accept(1, sink.url("/crm"), rule_id="r")
        attempt, status = await wired.dispatcher.deliver(delivery, lease=lease)
    finally:
        await wired.close()
    assert status == "failed"
    assert attempt.status_code is None
    assert attempt.error is not None and "127.0.0.1" in attempt.error
    assert sink.received == []


def test_dispatch_settings_and_the_address_policy_come_from_config() -> None:
    settings = load_settings(
        env={},
        delivery={
            "timeout_seconds": 7,
            "concurrency": 9,
            "per_host_concurrency": 3,
            "poll_seconds": 0.5,
            "lease_seconds": 90,
            "max_queued_per_host": 11,
            "allowed_networks": ["10.0.0.0/8"],
        },
    )
    assert dispatch_settings(settings) == DispatchSettings(
        timeout_seconds=7,
        concurrency=9,
        per_host_concurrency=3,
        poll_seconds=0.5,
        lease_seconds=90,
        max_queued_per_host=11,
        user_agent=f"hookgate/{__version__}",
    )
    policy = address_policy(settings)
    assert policy.allow_private is False
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8"]
    client = build_http_client(settings)
    assert (client.settings.concurrency, client.settings.per_host_concurrency) == (9, 3)
    assert client.policy == policy

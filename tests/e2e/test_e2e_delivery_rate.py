"""Delivery rate limits (`rate`, `burst`) end to end: real `hookgate serve` processes with
two delivery worker processes each, a loopback sink that notes when each request arrived.

What must hold: the slots the bucket granted (each attempt's `rate_slot_at`) number at
most `rate` x T + `burst` in any window of T seconds, and every request reached the sink
no earlier than its slot; every event's delivery arrives exactly once (waiting is neither
dropping nor retrying); a delivery that waited has one attempt, not a failure per wait;
and the bucket is shared by every worker, and on Redis and PostgreSQL by every gateway on
the store.

The bound is checked on the slot times, not on the sink's arrival times: a request
reaches the sink its slot time plus its transit, and a sender descheduled between the
two (a loaded 2-core CI runner) delivers a request granted in one second alongside the
next second's. Arrivals bunched that way broke a bound on arrivals (13 in a second at
rate 10, burst 2) while the slots never exceeded it.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e


def _env(tmp: Path, rules_dir: Path, **extra: str) -> dict[str, str]:
    return harness.delivery_env(
        tmp,
        rules_dir,
        HOOKGATE_LIMITS_GLOBAL_RATE="1000000",
        HOOKGATE_LIMITS_GLOBAL_BURST="1000000",
        HOOKGATE_DELIVERY_WORKERS="2",
        **extra,
    )


def _rules(tmp: Path, text: str = "") -> Path:
    return harness.rules_dir(tmp, throttled=text) if text else harness.rules_dir(tmp)


def _throttled_rule(url: str, rate: float, burst: int) -> str:
    return f"""
[[rules]]
id = "throttled"
event_types = ["job_completed"]

  [[rules.actions]]
  type = "webhook"
  url = "{url}"
  rate = {rate}
  burst = {burst}
"""


def _app_token(admin: httpx.Client, name: str = "fieldapp") -> str:
    created = admin.post("/v1/apps", json={"name": name, "rate": 10_000, "burst": 10_000})
    assert created.status_code == 201, created.text
    token = str(created.json()["token"])
    harness.track_secret(token)
    return token


def _post_events(base_urls: list[str], token: str, count: int) -> None:
    """`count` events, spread over the gateways in turn, all answered 202 (once every
    gateway knows the app: a `ping`, which no rule matches, is answered 202)."""
    for base_url in base_urls:
        with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as public:
            harness.wait_until(
                lambda public=public: (
                    public.post(f"/api/event/{token}", json={"event_type": "ping"}).status_code
                    == 202
                )
            )

    def send(base_url: str, numbers: range) -> None:
        with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as public:
            for n in numbers:
                response = public.post(
                    f"/api/event/{token}", json={"event_type": "job_completed", "n": n}
                )
                assert response.status_code == 202, response.text

    threads = [
        threading.Thread(target=send, args=(url, range(i, count, len(base_urls))))
        for i, url in enumerate(base_urls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _busiest(times: list[float], seconds: float) -> int:
    """The most of `times` within any closed window of `seconds` (a sliding window)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] > seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _within_rate(
    admin: httpx.Client,
    received: list[harness.Received],
    rate: float,
    burst: int,
    **params: str,
) -> None:
    """The GCRA bound on the granted slots, for windows of 1 and 3 s, and each request's
    arrival after its slot. A GCRA bucket grants at most rate x T + burst slots in any T
    seconds; slot times are truncated to the millisecond, which shifts no window past that
    bound (closed windows, floor of the bound)."""
    slots: dict[str, float] = {}
    cursor: str | None = None
    while True:
        query = {**params, "limit": "500", **({"cursor": cursor} if cursor else {})}
        page = admin.get("/v1/deliveries", params=query).json()
        for row in page["data"]:
            (sent,) = admin.get(f"/v1/deliveries/{row['id']}").json()["attempts"]
            assert sent["rate_slot_at"] is not None, sent
            assert _epoch(sent["rate_slot_at"]) <= _epoch(sent["at"]), sent
            slots[row["event_id"]] = _epoch(sent["rate_slot_at"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    arrived = {r.json()["id"]: r.at for r in received}
    assert set(arrived) == set(slots)
    early = {e: (slots[e], at) for e, at in arrived.items() if at < slots[e]}
    assert not early, early  # a request cannot reach the sink before its slot
    for seconds in (1.0, 3.0):
        bound = math.floor(rate * seconds + burst)
        busiest = _busiest(list(slots.values()), seconds)
        assert busiest <= bound, f"{busiest} slots within {seconds} s, bound {bound}"


def _exactly_once(received: list[harness.Received], count: int) -> None:
    """Event n arrived once for every n (each event has one delivery here)."""
    numbers = Counter(r.json()["data"]["n"] for r in received)
    assert sorted(numbers) == list(range(count)), f"{len(numbers)} distinct events of {count}"
    assert max(numbers.values()) == 1, [n for n, times in numbers.items() if times > 1]


def _attempt_counts(admin: httpx.Client, **params: str) -> Counter[tuple[str, int]]:
    """(status, attempt_count) over every delivery matching `params`, page by page."""
    seen: Counter[tuple[str, int]] = Counter()
    cursor: str | None = None
    while True:
        query = {**params, "limit": "500", **({"cursor": cursor} if cursor else {})}
        page = admin.get("/v1/deliveries", params=query).json()
        seen.update((row["status"], row["attempt_count"]) for row in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_a_target_at_rate_5_sends_200_queued_events_5_a_second_each_once(
    tmp_path: Path, sink: harness.Sink
) -> None:
    events, rate, burst = 200, 5, 5
    server = harness.ServerProcess(tmp_path, _env(tmp_path, _rules(tmp_path)), "rate-target")
    try:
        server.start()
        with server.admin() as admin:
            created = admin.post(
                "/v1/webhook-targets",
                json={"url": sink.url("/crm"), "events": ["job_completed"], "rate": rate},
            )
            assert created.status_code == 201, created.text
            target = created.json()
            harness.track_secret(target["secret"])
            assert (target["rate"], target["burst"]) == (5.0, 5)  # burst defaults to ceil(rate)
            token = _app_token(admin)
            _post_events([server.base_url], token, events)
            received = sink.wait_for(events, "/crm", timeout=120.0)
            counts = harness.wait_until(
                lambda: (
                    (c := _attempt_counts(admin, target_id=target["id"]))
                    == Counter({("succeeded", 1): events})
                    and c
                ),
                timeout=20.0,
            )
            assert sum(counts.values()) == events
            _within_rate(admin, received, rate, burst, target_id=target["id"])
    finally:
        server.stop()
    _exactly_once(sink.requests_to("/crm"), events)


def test_a_rule_action_rate_is_shared_by_both_workers_and_waiting_is_no_attempt(
    tmp_path: Path, sink: harness.Sink
) -> None:
    events, rate, burst = 60, 20, 2
    rules_dir = _rules(tmp_path, _throttled_rule(sink.url("/rule"), rate, burst))
    server = harness.ServerProcess(tmp_path, _env(tmp_path, rules_dir), "rate-rule")
    try:
        server.start()
        with server.admin() as admin:
            token = _app_token(admin)
            _post_events([server.base_url], token, events)
            received = sink.wait_for(events, "/rule", timeout=60.0)
            harness.wait_until(
                lambda: (
                    _attempt_counts(admin, rule_id="throttled")
                    == Counter({("succeeded", 1): events})
                ),
                timeout=20.0,
            )
            _within_rate(admin, received, rate, burst, rule_id="throttled")
    finally:
        server.stop()
    _exactly_once(sink.requests_to("/rule"), events)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_two_gateways_on_one_store_share_a_rule_actions_bucket(
    tmp_path: Path, sink: harness.Sink, request: pytest.FixtureRequest, backend: str
) -> None:
    # Each gateway alone would send at the full rate: together they must not exceed it.
    events, rate, burst = 60, 10, 2
    rules_dir = _rules(tmp_path, _throttled_rule(sink.url("/shared"), rate, burst))
    store = harness.store_env(backend, request)
    gateways = [
        harness.ServerProcess(
            tmp_path,
            _env(tmp_path, rules_dir, **store, HOOKGATE_STORAGE_DATA_DIR=str(tmp_path / name)),
            name,
        )
        for name in (f"{backend}-rate-gw1", f"{backend}-rate-gw2")
    ]
    try:
        urls = [gw.start() for gw in gateways]
        with gateways[0].admin() as admin:
            token = _app_token(admin)
            _post_events(urls, token, events)
            received = sink.wait_for(events, "/shared", timeout=60.0)
            harness.wait_until(
                lambda: (
                    _attempt_counts(admin, rule_id="throttled")
                    == Counter({("succeeded", 1): events})
                ),
                timeout=20.0,
            )
            _within_rate(admin, received, rate, burst, rule_id="throttled")
    finally:
        for gw in gateways:
            gw.stop()
    _exactly_once(sink.requests_to("/shared"), events)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"rate": 0}, "rate", "> 0"),
        ({"rate": -1}, "rate", "> 0"),
        ({"rate": "fast"}, "rate", "number"),
        ({"rate": True}, "rate", "number"),
        ({"rate": 5, "burst": 0}, "burst", ">= 1"),
        ({"rate": 5, "burst": 2.5}, "burst", "integer"),
        ({"burst": 3}, "burst", "needs a rate"),
    ],
)
def test_bad_rate_or_burst_on_a_target_is_a_clear_422(
    gateway: harness.Gateway, sink: harness.Sink, body: dict[str, Any], field: str, words: str
) -> None:
    created = gateway.admin.post("/v1/webhook-targets", json={"url": sink.url("/t"), **body})
    assert created.status_code == 422, created.text
    error = created.json()
    assert error["error"] == "validation_error", error
    assert error["field"] == field and words in error["detail"], error

    good = gateway.admin.post("/v1/webhook-targets", json={"url": sink.url("/t")})
    assert good.status_code == 201, good.text
    harness.track_secret(good.json()["secret"])
    patched = gateway.admin.patch(f"/v1/webhook-targets/{good.json()['id']}", json=body)
    assert patched.status_code == 422, patched.text
    assert patched.json()["field"] == field


def test_a_targets_rate_is_set_changed_and_removed_by_patch(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    created = gateway.admin.post(
        "/v1/webhook-targets", json={"url": sink.url("/t"), "rate": 0.5, "burst": 3}
    )
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    target_id = created.json()["id"]
    assert (created.json()["rate"], created.json()["burst"]) == (0.5, 3)
    path = f"/v1/webhook-targets/{target_id}"
    faster = gateway.admin.patch(path, json={"rate": 20}).json()
    assert (faster["rate"], faster["burst"]) == (20.0, 3)  # the burst set is kept
    assert gateway.admin.get(path).json()["rate"] == 20.0
    unlimited = gateway.admin.patch(path, json={"rate": None}).json()
    assert (unlimited["rate"], unlimited["burst"]) == (None, None)
    plain = gateway.admin.patch(path, json={"rate": 2.5}).json()
    assert (plain["rate"], plain["burst"]) == (2.5, 3)  # default burst: ceil(rate)


def test_the_console_target_forms_set_and_clear_the_rate(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    with httpx.Client(base_url=gateway.base_url, trust_env=False, timeout=30) as client:
        signed_in = client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN})
        assert signed_in.status_code == 303
        match = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/targets").text)
        assert match is not None
        csrf = match.group(1)
        form = {"csrf": csrf, "url": sink.url("/console"), "rate": "2.5", "burst": "6"}
        created = client.post("/console/targets", data=form)
        assert created.status_code == 201, created.text
        secret = re.search(r'id="target-secret" readonly value="([^"]+)"', created.text)
        assert secret is not None
        harness.track_secret(secret.group(1))
        (target,) = gateway.admin.get("/v1/webhook-targets").json()["data"]
        assert (target["rate"], target["burst"]) == (2.5, 6)
        page = client.get(f"/console/targets/{target['id']}").text
        assert 'name="rate" type="number" min="0" step="any" value="2.5"' in page

        bad = client.post("/console/targets", data={**form, "rate": "0"})
        assert bad.status_code == 422 and "rate: must be a number" in bad.text

        cleared = client.post(
            f"/console/targets/{target['id']}",
            data={
                "csrf": csrf,
                "url": sink.url("/console"),
                "rate": "",
                "burst": "",
                "status": "active",
            },
        )
        assert cleared.status_code == 303
        after = gateway.admin.get(f"/v1/webhook-targets/{target['id']}").json()
        assert (after["rate"], after["burst"]) == (None, None)


def test_rules_check_refuses_a_bad_rate_and_burst_from_the_shell(tmp_path: Path) -> None:
    rules_dir = _rules(tmp_path)
    (rules_dir / "crm.toml").write_text(
        _throttled_rule("http://127.0.0.1:9/crm", 5, 2).replace("rate = 5", "rate = 0")
        + _throttled_rule("http://127.0.0.1:9/crm", 5, 0).replace('"throttled"', '"second"')
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "check", "rules.d"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "rules.d/crm.toml:throttled: actions[0].rate: must be a number of deliveries per"
        " second > 0 and <= 1e+06, got 0",
        "rules.d/crm.toml:second: actions[0].burst: must be an integer >= 1 and <= 1000000, got 0",
    ]


def test_retry_after_still_pushes_the_next_attempt_of_a_rate_limited_target(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    sink.statuses["/busy"] = 429
    sink.headers["/busy"] = {"Retry-After": "2"}
    created = gateway.admin.post(
        "/v1/webhook-targets",
        json={"url": sink.url("/busy"), "retry": [0.1, 0.1], "rate": 20, "burst": 1},
    )
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    _, token = gateway.create_app("acme")
    posted = gateway.post_event(token, {"event_type": "job_completed"})
    assert posted.status_code == 202, posted.text
    sink.wait_for(1, "/busy")
    sink.statuses["/busy"] = 200
    event_id = posted.json()["event_id"]

    def succeeded() -> dict[str, Any] | None:
        (row,) = gateway.admin.get(f"/v1/events/{event_id}").json()["deliveries"]
        if row["status"] != "succeeded":
            return None
        return dict(gateway.admin.get(f"/v1/deliveries/{row['id']}").json())

    delivery = harness.wait_until(succeeded, timeout=15.0)
    assert [a["status_code"] for a in delivery["attempts"]] == [429, 200]
    first, second = sink.requests_to("/busy")
    assert second.at - first.at >= 1.9  # the receiver's 2 s, not the rate's 0.05 s

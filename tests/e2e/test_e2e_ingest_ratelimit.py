"""Token buckets end to end (docs/design.md §3 rate limits; issue 2 acceptance): per-app GCRA
buckets, then the global one; a request refused by its app bucket spends no global token.
The same assertions hold for one in-process gateway (memory backend) and for two gateway
processes sharing one real Redis.

Requests go out concurrently from pre-connected clients released by a barrier, so a burst
of 30 usually lands within a few tens of milliseconds and refill during it is a fraction of a
token, which the ±1 tolerance covers. On a loaded machine a burst can take longer, and the
buckets really do refill meanwhile, so the upper bound grows by the tokens that the measured
burst duration can have added (`refill`); the lower bound never moves.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

RATE_LIMITED = b'{"rateLimited":true}'


class Burst(list[tuple[str, httpx.Response]]):
    """(token, response) pairs of one burst, plus when it started and ended."""

    started = math.inf
    ended = 0.0


def refill(rate: float, *bursts: Burst) -> int:
    """Whole tokens a bucket of `rate` can regain between the first send and last answer."""
    return math.floor(rate * (max(b.ended for b in bursts) - min(b.started for b in bursts)))


def burst(targets: list[tuple[str, str]]) -> Burst:
    """POST one event per (base_url, token), all at once."""
    barrier = threading.Barrier(len(targets))
    results = Burst()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(base_url: str, token: str) -> None:
        try:
            with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as client:
                client.get("/healthz")  # the connection is open before the barrier
                barrier.wait(timeout=20)
                started = time.monotonic()
                response = client.post(
                    f"/api/event/{token}",
                    content=b'{"event_type":"burst"}',
                    headers={"content-type": "application/json"},
                )
                ended = time.monotonic()
            with lock:
                results.append((token, response))
                results.started = min(results.started, started)
                results.ended = max(results.ended, ended)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=send, args=target) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(results) == len(targets)
    return results


def check_refusals(results: Burst) -> None:
    """Every answer is 202 or the exact 429 of docs/design.md §3."""
    for _, response in results:
        if response.status_code == 202:
            assert response.json()["accepted"] is True
            continue
        assert response.status_code == 429, response.text
        assert response.content == RATE_LIMITED
        assert response.headers["retry-after"].isdigit()
        assert int(response.headers["retry-after"]) >= 1
        for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            assert response.headers[name].isdigit(), name


def accepted(results: Burst, token: str | None = None) -> int:
    return sum(1 for t, r in results if r.status_code == 202 and (token is None or t == token))


def metric(base_urls: list[str], name: str, **labels: str) -> float:
    """A counter summed over the /metrics pages of every gateway."""
    total = 0.0
    for base_url in base_urls:
        text = httpx.get(base_url + "/metrics", trust_env=False, timeout=10).text
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
            if not match:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def stored_count(admin: httpx.Client, app_id: str) -> int:
    page = admin.get("/v1/events", params={"app_id": app_id, "limit": 500})
    assert page.status_code == 200
    return len(page.json()["data"])


# The three assertions, shared by the memory and Redis variants below.
def assert_app_bucket(urls: list[str], admin: httpx.Client, token: str, app_id: str) -> None:
    results = burst([(urls[i % len(urls)], token) for i in range(30)])
    check_refusals(results)
    ok = accepted(results)
    assert 9 <= ok <= 11 + refill(10, results), Counter(r.status_code for _, r in results)
    assert metric(urls, "hookgate_rate_limited_total", scope="app") == 30 - ok
    assert metric(urls, "hookgate_rate_limited_total", scope="global") == 0
    assert stored_count(admin, app_id) == ok


def assert_global_bucket(urls: list[str], tokens: list[str]) -> None:
    targets = [(urls[i % len(urls)], tokens[i % 2]) for i in range(20)]
    results = burst(targets)
    check_refusals(results)
    ok = accepted(results)
    assert 14 <= ok <= 16 + refill(15, results), Counter(r.status_code for _, r in results)
    # neither app went past its own bucket: every refusal was the global one
    assert all(accepted(results, t) <= 10 for t in tokens)
    assert metric(urls, "hookgate_rate_limited_total", scope="global") == 20 - ok
    assert metric(urls, "hookgate_rate_limited_total", scope="app") == 0


def assert_app_refusal_spends_no_global_token(
    urls: list[str], tight_token: str, roomy_token: str
) -> None:
    # 20 requests for an app with burst 1: one accepted, 19 refused by the app bucket
    first = burst([(urls[i % len(urls)], tight_token) for i in range(20)])
    check_refusals(first)
    assert accepted(first) == 1
    assert metric(urls, "hookgate_rate_limited_total", scope="app") == 19
    # a third app still finds the 14 global tokens the refused requests did not spend
    second = burst([(urls[i % len(urls)], roomy_token) for i in range(20)])
    check_refusals(second)
    ok = accepted(second)
    assert 14 <= ok <= 15 + refill(15, first, second), Counter(r.status_code for _, r in second)
    assert metric(urls, "hookgate_rate_limited_total", scope="global") == 20 - ok


# memory backend, one gateway
@pytest.fixture
def global15(tmp_path: Path) -> Iterator[harness.Gateway]:
    settings = harness.make_settings(tmp_path, limits={"global_rate": 15, "global_burst": 15})
    with harness.running_gateway(settings) as running:
        yield running


def test_thirty_requests_to_a_10_per_second_app_get_ten_202s(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("ten")  # the default: rate 10, burst 10
    assert gateway.admin.get(f"/v1/apps/{app_id}").json()["rate"] == 10
    assert_app_bucket([gateway.base_url], gateway.admin, token, app_id)


def test_two_apps_under_their_own_limits_together_get_global_429s(
    global15: harness.Gateway,
) -> None:
    _, token_a = global15.create_app("a", rate=10, burst=10)
    _, token_b = global15.create_app("b", rate=10, burst=10)
    assert_global_bucket([global15.base_url], [token_a, token_b])


def test_app_bucket_refusal_spends_no_global_token(global15: harness.Gateway) -> None:
    _, tight = global15.create_app("tight", rate=0.01, burst=1)
    _, roomy = global15.create_app("roomy", rate=1000, burst=1000)
    assert_app_refusal_spends_no_global_token([global15.base_url], tight, roomy)


# Redis backend, two gateway processes
class Pair:
    """Two `hookgate serve` processes on one SQLite data dir and one Redis key prefix."""

    def __init__(self, tmp: Path, redis_url: dict[str, Any], **env: str) -> None:
        self.env = {
            "HOOKGATE_LIMITS_BACKEND": "redis",
            "HOOKGATE_REDIS_URL": redis_url["url"],
            "HOOKGATE_REDIS_KEY_PREFIX": redis_url["prefix"],
            "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
            "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
            "HOOKGATE_RULES_DIR": str(tmp / "rules.d"),
            **env,
        }
        self.procs = [harness.ServerProcess(tmp, self.env, name=f"gw{i}") for i in (1, 2)]
        self.urls: list[str] = []
        self.first_admin: httpx.Client | None = None

    def start_first(self) -> httpx.Client:
        self.urls.append(self.procs[0].start())
        self.first_admin = self.procs[0].admin()
        return self.first_admin

    def start_second(self) -> None:
        """Started after the apps exist, so its app index holds them from the start."""
        self.urls.append(self.procs[1].start())

    def create_app(self, name: str, **fields: Any) -> tuple[str, str]:
        assert self.first_admin is not None
        response = self.first_admin.post("/v1/apps", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        body = response.json()
        harness.track_secret(body["token"])
        return body["id"], body["token"]

    def stop(self) -> None:
        if self.first_admin is not None:
            self.first_admin.close()
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def pair(tmp_path: Path, redis_url: dict[str, Any]) -> Iterator[Pair]:
    running = Pair(
        tmp_path,
        redis_url,
        HOOKGATE_LIMITS_GLOBAL_RATE="15",
        HOOKGATE_LIMITS_GLOBAL_BURST="15",
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.redis
def test_two_processes_share_one_app_bucket_in_redis(pair: Pair) -> None:
    admin = pair.start_first()
    app_id, token = pair.create_app("ten", rate=10, burst=10)
    pair.start_second()
    assert_app_bucket(pair.urls, admin, token, app_id)
    # Redis answered every check: with per-process fallback buckets, two processes would
    # have accepted about 20
    assert metric(pair.urls, "hookgate_ratelimit_redis_errors_total") == 0


@pytest.mark.redis
def test_two_processes_share_one_global_bucket_in_redis(pair: Pair) -> None:
    pair.start_first()
    _, token_a = pair.create_app("a", rate=10, burst=10)
    _, token_b = pair.create_app("b", rate=10, burst=10)
    pair.start_second()
    assert_global_bucket(pair.urls, [token_a, token_b])


@pytest.mark.redis
def test_app_refusal_spends_no_global_token_in_redis(pair: Pair) -> None:
    pair.start_first()
    _, tight = pair.create_app("tight", rate=0.01, burst=1)
    _, roomy = pair.create_app("roomy", rate=1000, burst=1000)
    pair.start_second()
    assert_app_refusal_spends_no_global_token(pair.urls, tight, roomy)

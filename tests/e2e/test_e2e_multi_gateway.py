"""Three `hookgate serve` processes (each with its delivery worker) on one shared store and
Redis rate limits: the global bucket holds across them, what one accepts the others list, a
target made on one fires for events taken by another, a slow receiver gets each
`webhook-id` once, the gateway holding leases dies and the others finish its work, and rule
files reload on each. Run over every store several gateways can share."""

from __future__ import annotations

import base64
import collections
import contextlib
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SECRET = "whsec_" + base64.b64encode(b"e2e-multi-gateway-relay-secret!").decode()
POSTGRES_URL = os.environ.get("HOOKGATE_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _postgres_store_here() -> str | None:
    """Why the PostgreSQL variant cannot run, or None when it can."""
    from gateway.config import load_settings

    try:
        load_settings(env={}, storage={"backend": "postgres"}).validate()
    except Exception as exc:  # this build has no PostgreSQL store
        return f"no PostgreSQL store in this build ({exc})"
    return None


@pytest.fixture
def store_env(
    request: pytest.FixtureRequest, redis_url: dict[str, Any]
) -> Iterator[dict[str, str]]:
    """Environment for the shared store: Redis under the test's prefix, or PostgreSQL in a
    schema of the test's own (dropped afterwards)."""
    common = {
        "HOOKGATE_REDIS_URL": redis_url["url"],
        "HOOKGATE_REDIS_KEY_PREFIX": redis_url["prefix"],
        "HOOKGATE_LIMITS_BACKEND": "redis",
    }
    if request.param == "redis":
        yield {**common, "HOOKGATE_STORAGE_BACKEND": "redis"}
        return
    reason = _postgres_store_here()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    import asyncio

    import asyncpg

    schema = "hg_multi_" + uuid.uuid4().hex[:12]

    async def run(sql: str) -> None:
        try:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        except (OSError, asyncpg.PostgresError) as exc:
            message = f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc})"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield {
            **common,
            "HOOKGATE_STORAGE_BACKEND": "postgres",
            # asyncpg passes unknown DSN parameters on as server settings
            "HOOKGATE_POSTGRES_URL": f"{POSTGRES_URL}{sep}search_path={schema}",
        }
    finally:
        asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


BACKENDS = pytest.mark.parametrize("store_env", ["redis", "postgres"], indirect=True)


class Trio:
    """Three gateways on one store; each its own data dir (served URL, session files)."""

    def __init__(self, tmp: Path, store_env: dict[str, str], sink: harness.Sink, **env: str):
        self.rules_dir = tmp / "rules.d"
        self.rules_dir.mkdir()
        self.rules_file = self.rules_dir / "relay.toml"
        self.sink = sink
        self.write_rule("relay", "/relay")
        base = {
            **store_env,
            "HOOKGATE_LIMITS_GLOBAL_RATE": "1000000",
            "HOOKGATE_LIMITS_GLOBAL_BURST": "1000000",
            "HOOKGATE_RULES_DIR": str(self.rules_dir),
            "HOOKGATE_RULES_RELOAD": "false",  # only SIGHUP reloads: each gateway is asked
            "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKGATE_DELIVERY_POLL_SECONDS": "0.1",
            "HOOKGATE_DELIVERY_LEASE_SECONDS": "5",
            "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
            "MULTI_GW_SECRET": SECRET,
            **env,
        }
        self.gateways = [
            harness.ServerProcess(tmp, {**base, "HOOKGATE_STORAGE_DATA_DIR": str(tmp / n)}, n)
            for n in ("gw1", "gw2", "gw3")
        ]

    def write_rule(self, rule_id: str, path: str) -> None:
        self.rules_file.write_text(
            f"""
[[rules]]
id = "{rule_id}"

  [[rules.actions]]
  type = "webhook"
  url = "{self.sink.url(path)}"
  retry = [1, 1, 1]
  secret_env = "MULTI_GW_SECRET"
"""
        )

    def start(self) -> list[str]:
        return [gw.start() for gw in self.gateways]

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()


@pytest.fixture
def make_trio(tmp_path: Path, store_env: dict[str, str], sink: harness.Sink) -> Iterator[Any]:
    harness.track_secret(SECRET)
    made: list[Trio] = []

    def make(**env: str) -> Trio:
        trio = Trio(tmp_path, store_env, sink, **env)
        made.append(trio)
        return trio

    try:
        yield make
    finally:
        for trio in made:
            trio.stop()


def create_app(gw: harness.ServerProcess, name: str, **fields: Any) -> tuple[str, str]:
    with gw.admin() as admin:
        created = admin.post("/v1/apps", json={"name": name, **fields})
    assert created.status_code == 201, created.text
    token = str(created.json()["token"])
    harness.track_secret(token)
    return str(created.json()["id"]), token


def token_known(url: str, token: str) -> bool:
    """Whether the gateway at `url` knows the token (a body it refuses with 400, not 404)."""
    response = httpx.post(f"{url}/api/event/{token}", content=b"[", trust_env=False, timeout=5)
    return response.status_code != 404


def all_know(urls: list[str], token: str) -> None:
    for url in urls:
        harness.wait_until(lambda u=url: token_known(u, token), timeout=5, interval=0.05)


def deliveries(gw: harness.ServerProcess, **filters: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    with gw.admin() as admin:
        while True:
            params: dict[str, Any] = {"limit": 500, **filters}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/v1/deliveries", params=params)
            assert page.status_code == 200, page.text
            rows += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return rows


def post_many(url: str, token: str, payloads: list[dict[str, Any]]) -> list[httpx.Response]:
    import asyncio

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one(payload: dict[str, Any]) -> httpx.Response:
                async with sem:
                    return await client.post(f"/api/event/{token}", json=payload)

            return list(await asyncio.gather(*(one(p) for p in payloads)))

    return asyncio.run(run())


def webhook_ids(sink: harness.Sink, path: str) -> collections.Counter[str]:
    return collections.Counter(r.headers["webhook-id"] for r in sink.requests_to(path))


@BACKENDS
def test_the_global_bucket_holds_across_three_gateways(make_trio: Any) -> None:
    rate, burst = 2.0, 10
    trio = make_trio(HOOKGATE_LIMITS_GLOBAL_RATE=str(rate), HOOKGATE_LIMITS_GLOBAL_BURST=str(burst))
    urls = trio.start()
    _, token = create_app(trio.gateways[0], "bucket", rate=1e6, burst=1_000_000)
    all_know(urls, token)
    time.sleep(burst / rate)  # the probes above spent tokens: let the bucket refill
    codes: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=10) as client:
        for n in range(45):
            r = client.post(f"{urls[n % 3]}/api/event/{token}", json={"n": n})
            codes[r.status_code] += 1
            if r.status_code == 429:
                assert r.json() == {"rateLimited": True}
    elapsed = time.monotonic() - started
    assert set(codes) <= {202, 429}
    # one bucket for the three: the burst plus what refilled while sending, never 3 bursts
    assert burst <= codes[202] <= burst + math.ceil(elapsed * rate) + 1, (codes, elapsed)


@BACKENDS
def test_what_one_gateway_takes_the_others_list_and_targets_fire_everywhere(
    make_trio: Any, sink: harness.Sink
) -> None:
    trio = make_trio()
    urls = trio.start()
    gw1, gw2, _ = trio.gateways
    app_id, token = create_app(gw1, "shared", rate=1e6, burst=1_000_000)
    all_know(urls, token)
    with gw2.admin() as admin:
        target = admin.post(
            "/v1/webhook-targets", json={"url": sink.url("/target"), "events": ["tick"]}
        )
        assert target.status_code == 201, target.text
        harness.track_secret(target.json()["secret"])
        target_id = target.json()["id"]
    # the target made on gw2 reaches every gateway's matcher through the store
    for gw in trio.gateways:
        with gw.admin() as admin:

            def matched_by(a: httpx.Client = admin) -> bool:
                rules = a.get("/v1/rules").json()["data"]
                return f"target:{target_id}" in {r["id"] for r in rules}

            harness.wait_until(matched_by, timeout=10)
    accepted = []
    with httpx.Client(trust_env=False, timeout=10) as client:
        for n in range(9):
            r = client.post(f"{urls[n % 3]}/api/event/{token}", json={"event_type": "tick", "n": n})
            assert r.status_code == 202, r.text
            accepted.append(r.json()["event_id"])
    for gw in trio.gateways:
        with gw.admin() as admin:
            for event_id in accepted:
                got = admin.get(f"/v1/events/{event_id}")
                assert got.status_code == 200, (gw.name, got.text)
                assert got.json()["app_id"] == app_id
    # every event, whichever gateway took it, went to the rule's sink and to the target
    sink.wait_for(9, "/relay", timeout=30)
    harness.wait_until(lambda: len(sink.requests_to("/target")) >= 9, timeout=30)
    sent = {r.json()["id"] for r in sink.requests_to("/target")}
    assert sent == set(accepted)


@BACKENDS
def test_a_slow_receiver_gets_each_webhook_id_once_from_three_gateways(
    make_trio: Any, sink: harness.Sink
) -> None:
    """Leases of 3 s against a receiver answering in 2 s, 300 events over three gateways:
    unfenced leases ran out under queued deliveries and another gateway sent them again."""
    events = 300
    sink.delays["/relay"] = 2.0
    trio = make_trio(
        HOOKGATE_DELIVERY_LEASE_SECONDS="3",
        HOOKGATE_DELIVERY_CONCURRENCY="64",
        HOOKGATE_DELIVERY_PER_HOST_CONCURRENCY="32",
        HOOKGATE_DELIVERY_TIMEOUT_SECONDS="10",
    )
    urls = trio.start()
    _, token = create_app(trio.gateways[0], "slow", rate=1e6, burst=1_000_000)
    all_know(urls, token)
    codes = []
    for i, url in enumerate(urls):
        share = [{"n": n} for n in range(i, events, 3)]
        codes += [r.status_code for r in post_many(url, token, share)]
    assert codes == [202] * events
    harness.wait_until(lambda: len(webhook_ids(sink, "/relay")) >= events, timeout=120)
    harness.wait_until(lambda: deliveries(trio.gateways[1], status="pending") == [], timeout=30)
    ids = webhook_ids(sink, "/relay")
    assert len(ids) == events
    assert {i: n for i, n in ids.items() if n > 1} == {}


@BACKENDS
def test_the_others_send_what_a_killed_gateway_held_when_its_lease_runs_out(
    make_trio: Any, sink: harness.Sink
) -> None:
    """gw1 alone claims 20 deliveries to a receiver that holds them unanswered, then dies
    with kill -9 (its worker with it); gw2 and gw3 send them all once the lease expires."""
    trio = make_trio(HOOKGATE_DELIVERY_LEASE_SECONDS="4")
    gw1, gw2, gw3 = trio.gateways
    trio.write_rule("relay", "/held")
    sink.hang.add("/held")
    url1 = gw1.start()
    assert gw1.proc is not None
    _, token = create_app(gw1, "held", rate=1e6, burst=1_000_000)
    accepted = [r.json()["event_id"] for r in post_many(url1, token, [{"n": n} for n in range(20)])]
    assert len(accepted) == 20
    harness.wait_until(lambda: len(sink.requests_to("/held")) >= 8, timeout=20)
    worker_pids = harness.children(gw1.proc.pid, "gateway.delivery.worker")
    gw1.kill9()
    for pid in worker_pids:  # a worker whose server died by kill -9 may linger a moment
        _kill(pid)
    sink.hang.discard("/held")
    gw2.start()
    gw3.start()
    rows = harness.wait_until(
        lambda: (r := deliveries(gw2)) and all(d["status"] == "succeeded" for d in r) and r,
        timeout=60,
        interval=0.2,
    )
    assert {d["event_id"] for d in rows} == set(accepted)
    answered = {r.headers["webhook-id"] for r in sink.requests_to("/held")}
    assert answered >= {d["id"] for d in rows}


@BACKENDS
def test_rule_files_reload_on_each_gateway(make_trio: Any, sink: harness.Sink) -> None:
    trio = make_trio()
    urls = trio.start()
    _, token = create_app(trio.gateways[0], "reload", rate=1e6, burst=1_000_000)
    all_know(urls, token)
    trio.write_rule("renamed", "/after")
    for gw in trio.gateways:
        assert gw.proc is not None
        with gw.admin() as admin:
            before = admin.get("/v1/rules").json()["version"]
            gw.proc.send_signal(signal.SIGHUP)
            harness.wait_until(lambda a=admin, b=before: a.get("/v1/rules").json()["version"] != b)
            ids = {r["id"] for r in admin.get("/v1/rules").json()["data"]}
            assert "renamed" in ids and "relay" not in ids
    with httpx.Client(trust_env=False, timeout=10) as client:
        for url in urls:
            r = client.post(f"{url}/api/event/{token}", json={"from": url})
            assert r.status_code == 202, r.text
    sink.wait_for(3, "/after", timeout=20)
    assert {r.json()["data"]["from"] for r in sink.requests_to("/after")} == set(urls)
    assert sink.requests_to("/relay") == []


@BACKENDS
def test_kill_9_of_a_gateway_under_load_loses_no_acknowledged_event(
    make_trio: Any, sink: harness.Sink
) -> None:
    trio = make_trio()
    urls = trio.start()
    gw1, gw2, _ = trio.gateways
    app_id, token = create_app(gw1, "doomed", rate=1e6, burst=1_000_000)
    all_know(urls, token)
    acked: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()
    failures: list[str] = []

    def send(sender: int) -> None:
        with httpx.Client(base_url=urls[1], trust_env=False, timeout=10) as client:
            seq = 0
            while True:
                seq += 1
                try:
                    r = client.post(f"/api/event/{token}", json={"sender": sender, "seq": seq})
                except httpx.TransportError:
                    return  # the gateway is gone
                if r.status_code != 202:
                    failures.append(f"{r.status_code} {r.text}")
                    return
                with lock:
                    acked.add(r.json()["event_id"])
                    if len(acked) >= 60:
                        enough.set()

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=30), failures[:3]
    assert gw2.proc is not None
    worker_pids = harness.children(gw2.proc.pid, "gateway.delivery.worker")
    gw2.kill9()
    for pid in worker_pids:
        _kill(pid)
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures[:3]
    with gw1.admin() as admin:
        stored: set[str] = set()
        cursor = None
        while True:
            params: dict[str, Any] = {"app_id": app_id, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/v1/events", params=params).json()
            stored |= {e["id"] for e in page["data"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert acked <= stored, f"{len(acked - stored)} acknowledged events lost"
    gw2.start()  # restarted: everything pending goes out
    rows = harness.wait_until(
        lambda: (r := deliveries(gw1)) and all(d["status"] == "succeeded" for d in r) and r,
        timeout=60,
        interval=0.2,
    )
    assert {d["event_id"] for d in rows} == stored
    assert set(webhook_ids(sink, "/relay")) >= {d["id"] for d in rows}


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

"""Held, not dropped: a webhook target disabled after failures keeps what it matches as
`held`, is probed with its oldest held delivery, and once a probe succeeds sends every held
delivery exactly once, in order; one disabled by hand holds until `PATCH status=active`
releases it at once, and `DELETE` skips what it held. `hookgate serve` with two delivery
worker processes and a loopback sink, on the SQLite, Redis and PostgreSQL stores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-inline",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment choosing the store: the SQLite default (also with inline delivery, no
    worker processes), Redis under the test's key prefix, or PostgreSQL in a schema of the
    test's own (the fixtures clean up)."""
    if request.param == "sqlite-inline":
        yield {"HOOKGATE_DELIVERY_WORKERS": "0"}  # the server process sends, and probes
    else:
        yield harness.store_env(request.param, request)


@pytest.fixture
def server(tmp_path: Path, store_env: dict[str, str]) -> Iterator[harness.ServerProcess]:
    env = {
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / "data"),
        "HOOKGATE_STORAGE_SYNCHRONOUS": "normal",
        "HOOKGATE_RULES_DIR": str(tmp_path / "rules.d"),
        "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_DELIVERY_POLL_SECONDS": "0.2",
        # one sender, one request at a time to the sink's host: arrival order is send order
        # (two workers each sent one at a time, and two of them raced: [0, 2, 1, 3] arrived)
        "HOOKGATE_DELIVERY_WORKERS": "1",
        "HOOKGATE_DELIVERY_PER_HOST_CONCURRENCY": "1",
        **store_env,
    }
    process = harness.ServerProcess(tmp_path, env, "held")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _app_token(admin: httpx.Client) -> str:
    created = admin.post("/v1/apps", json={"name": "shop"})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    harness.track_secret(token)
    return token


def _target(admin: httpx.Client, **fields: Any) -> str:
    created = admin.post("/v1/webhook-targets", json={"retry": "none", **fields})
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    target_id: str = created.json()["id"]
    return target_id


def _post(public: httpx.Client, token: str, n: int) -> str:
    posted = public.post(f"/api/event/{token}", json={"type": "order", "n": n})
    assert posted.status_code == 202, posted.text
    event_id: str = posted.json()["event_id"]
    return event_id


def _deliveries(admin: httpx.Client, target_id: str, **params: Any) -> list[dict[str, Any]]:
    page = admin.get("/v1/deliveries", params={"target_id": target_id, "limit": 200, **params})
    assert page.status_code == 200, page.text
    rows: list[dict[str, Any]] = page.json()["data"]
    return rows


def _numbers(received: list[harness.Received]) -> list[int]:
    return [r.json()["data"]["n"] for r in received]


def test_a_target_disabled_after_failures_holds_and_sends_in_order_after_its_probe(
    server: harness.ServerProcess, sink: harness.Sink
) -> None:
    sink.statuses["/crm"] = 500
    with server.admin() as admin, httpx.Client(base_url=server.base_url) as public:
        token = _app_token(admin)
        target_id = _target(admin, url=sink.url("/crm"), disable_after=3, reenable_after="2s")
        for n in range(3):
            _post(public, token, n)
        sink.wait_for(3, "/crm", timeout=15.0)

        def target() -> dict[str, Any]:
            found: dict[str, Any] = admin.get(f"/v1/webhook-targets/{target_id}").json()
            return found

        disabled = harness.wait_until(lambda: target()["status"] == "disabled" and target())
        assert disabled["disabled_by"] == "failures"
        assert disabled["probe_interval_seconds"] == 2.0 and disabled["next_probe_at"]
        assert disabled["reenable_after"] == 2.0

        # accepted meanwhile: kept, not attempted, listed (and filterable) as held
        held_ids = [_post(public, token, n) for n in range(3, 8)]
        held = harness.wait_until(
            lambda: len(rows := _deliveries(admin, target_id, status="held")) == 5 and rows
        )
        assert sorted(r["event_id"] for r in held) == sorted(held_ids)
        assert all(r["attempt_count"] == 0 and r["next_attempt_at"] is None for r in held)

        # the first probe (the oldest held delivery) still fails: held again, wait doubled
        sink.wait_for(4, "/crm", timeout=15.0)
        backed_off = harness.wait_until(
            lambda: (t := target())["probe_interval_seconds"] == 4.0 and t, timeout=15.0
        )
        assert backed_off["status"] == "disabled" and backed_off["probe_delivery_id"] is None
        assert _numbers(sink.requests_to("/crm")) == [0, 1, 2, 3]
        oldest = next(r for r in _deliveries(admin, target_id) if r["event_id"] == held_ids[0])
        assert (oldest["status"], oldest["attempt_count"]) == ("held", 1)

        # the sink recovers: the next probe succeeds and the rest follow, in accept order
        sink.statuses["/crm"] = 200
        sink.wait_for(4 + 5, "/crm", timeout=20.0)
        harness.wait_until(
            lambda: len(_deliveries(admin, target_id, status="succeeded")) == 5, timeout=15.0
        )
        enabled = target()
        assert (enabled["status"], enabled["consecutive_failures"]) == ("active", 0)
        assert enabled["disabled_at"] is None and enabled["next_probe_at"] is None
        assert _deliveries(admin, target_id, status="held") == []

        # later events go straight out again
        _post(public, token, 8)
        sink.wait_for(4 + 5 + 1, "/crm", timeout=15.0)
    received = sink.requests_to("/crm")
    assert _numbers(received) == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8]
    after_recovery = received[4:9]
    assert len({r.headers["webhook-id"] for r in after_recovery}) == 5  # each exactly once


def test_disabled_by_hand_holds_until_patched_active_and_delete_skips(
    server: harness.ServerProcess, sink: harness.Sink
) -> None:
    with server.admin() as admin, httpx.Client(base_url=server.base_url) as public:
        token = _app_token(admin)
        target_id = _target(admin, url=sink.url("/erp"), reenable_after="1s")
        patched = admin.patch(f"/v1/webhook-targets/{target_id}", json={"status": "disabled"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["disabled_by"] == "api"
        assert patched.json()["next_probe_at"] is None  # never probed

        for n in range(4):
            _post(public, token, n)
        harness.wait_until(lambda: len(_deliveries(admin, target_id, status="held")) == 4)
        assert sink.requests_to("/erp") == []
        # the CLI lists them too, filtered by status
        command = ["deliveries", "list", "--status", "held", "--target-id", target_id, "--json"]
        listed = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command],
            cwd=server.tmp,
            env={**os.environ, **server.env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0, listed.stderr
        rows = orjson.loads(listed.stdout)["data"]
        assert [r["status"] for r in rows] == ["held"] * 4

        patched = admin.patch(f"/v1/webhook-targets/{target_id}", json={"status": "active"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["status"] == "active"
        sink.wait_for(4, "/erp", timeout=15.0)
        harness.wait_until(lambda: len(_deliveries(admin, target_id, status="succeeded")) == 4)
        assert _numbers(sink.requests_to("/erp")) == [0, 1, 2, 3]

        # held again, then deleted: what it held is skipped, nothing is sent
        admin.patch(f"/v1/webhook-targets/{target_id}", json={"status": "disabled"})
        late = _post(public, token, 4)
        harness.wait_until(lambda: _deliveries(admin, target_id, status="held"))
        assert admin.delete(f"/v1/webhook-targets/{target_id}").status_code == 204
        skipped = _deliveries(admin, target_id, status="skipped")
        assert [r["event_id"] for r in skipped] == [late]
    assert _numbers(sink.requests_to("/erp")) == [0, 1, 2, 3]

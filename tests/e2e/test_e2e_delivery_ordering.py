"""Ordered delivery (`ordering = "fifo"` keyed by `customerId`): the real server with two
delivery worker processes and a loopback sink, on the SQLite, Redis and PostgreSQL stores.

The sink answers the head of one customer with 500 until every other customer's
deliveries have arrived: if the failing head blocked the other keys, the head would never
succeed. A second action's head fails for good (retries exhausted), and the deliveries
behind it then go.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

PER_CUSTOMER = 4  # events per customer of the "crm" action
CRM_CUSTOMERS = ("A", "B", "C")  # A's first delivery fails until B's and C's all arrived
LEDGER_CUSTOMERS = ("D", "E")  # D's first delivery fails for good (3 attempts)
LEDGER_EVENTS = 3


def _rules(tmp: Path, sink: harness.Sink) -> Path:
    return harness.rules_dir(
        tmp,
        ordered=f"""
[[rules]]
id = "crm"
event_types = ["order"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/crm")}"
  retry = [{", ".join(["0.4"] * 25)}]
  ordering = "fifo"
  ordering_key = {{ var = "customerId" }}

[[rules]]
id = "ledger"
event_types = ["ledger"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/ledger")}"
  retry = [0.2, 0.2]
  ordering = "fifo"
  ordering_key = {{ var = "customerId" }}
""",
    )


class OrderedSink:
    """What the sink saw, per (path, customer): every arrival's `seq` in arrival order,
    successes, and the most requests of one key it ever had in flight at once."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.succeeded: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.in_flight: Counter[tuple[str, str]] = Counter()
        self.most_in_flight: Counter[tuple[str, str]] = Counter()

    def crm_others_done(self) -> bool:
        return all(
            len(self.succeeded[("/crm", c)]) == PER_CUSTOMER for c in CRM_CUSTOMERS if c != "A"
        )

    async def respond(self, received: harness.Received) -> int:
        data = received.json()["data"]
        key = (received.path, str(data["customerId"]))
        seq = int(data["seq"])
        self.arrivals[key].append(seq)
        self.in_flight[key] += 1
        self.most_in_flight[key] = max(self.most_in_flight[key], self.in_flight[key])
        try:
            # A request takes a moment, so two of one key sent at once would overlap here.
            await asyncio.sleep(0.05)
            head_of_a = key == ("/crm", "A") and seq == 0
            if head_of_a and (len(self.arrivals[key]) <= 2 or not self.crm_others_done()):
                return 500
            if key == ("/ledger", "D") and seq == 0:
                return 500
            self.succeeded[key].append(seq)
            return 200
        finally:
            self.in_flight[key] -= 1


def _env(
    tmp: Path, rules_dir: Path, backend: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    return harness.delivery_env(
        tmp,
        rules_dir,
        HOOKGATE_DELIVERY_WORKERS="2",
        HOOKGATE_LIMITS_APP_BURST="1000",
        **harness.store_env(backend, request),
    )


def _post_all(*servers: harness.ServerProcess) -> dict[tuple[str, str, int], str]:
    """Every event, one after another (each 202 before the next is sent, so accept order
    is this order), interleaving the customers and taking turns over `servers`; answers
    event ids by (type, customer, seq)."""
    with servers[0].admin() as admin:
        created = admin.post("/v1/apps", json={"name": "shop"})
        assert created.status_code == 201, created.text
        token = str(created.json()["token"])
    harness.track_secret(token)
    clients = [httpx.Client(base_url=s.base_url, trust_env=False, timeout=10) for s in servers]
    for client in clients[1:]:  # another gateway learns of the new app from the store
        harness.wait_until(
            lambda c=client: (
                c.post(f"/api/event/{token}", json={"event_type": "ping"}).status_code == 202
            )
        )
    plan = [("order", c, n) for n in range(PER_CUSTOMER) for c in CRM_CUSTOMERS]
    plan += [("ledger", c, n) for n in range(LEDGER_EVENTS) for c in LEDGER_CUSTOMERS]
    ids: dict[tuple[str, str, int], str] = {}
    try:
        for turn, (event_type, customer, seq) in enumerate(plan):
            payload = {"event_type": event_type, "customerId": customer, "seq": seq}
            response = clients[turn % len(clients)].post(f"/api/event/{token}", json=payload)
            assert response.status_code == 202, response.text
            ids[(event_type, customer, seq)] = str(response.json()["event_id"])
    finally:
        for client in clients:
            client.close()
    return ids


def _delivery(admin: httpx.Client, event_id: str) -> dict[str, Any]:
    rows = admin.get("/v1/deliveries", params={"event_id": event_id}).json()["data"]
    assert len(rows) == 1, rows
    return dict(rows[0])


@pytest.mark.parametrize(
    ("backend", "gateways"),
    [
        ("sqlite", 1),
        pytest.param("redis", 1, marks=pytest.mark.redis),
        pytest.param("postgres", 1, marks=pytest.mark.postgres),
        pytest.param("redis", 2, marks=pytest.mark.redis),
        pytest.param("postgres", 2, marks=pytest.mark.postgres),
    ],
)
def test_each_key_arrives_in_accept_order_while_a_failing_head_blocks_only_its_own(
    tmp_path: Path,
    sink: harness.Sink,
    request: pytest.FixtureRequest,
    backend: str,
    gateways: int,
) -> None:
    """With two gateways, each has its two workers, and the events take turns between the
    gateways: four processes claim from one store."""
    seen = OrderedSink()
    sink.respond = seen.respond
    env = _env(tmp_path, _rules(tmp_path, sink), backend, request)
    servers = [
        harness.ServerProcess(
            tmp_path, {**env, "HOOKGATE_STORAGE_DATA_DIR": str(tmp_path / f"data{n}")}, f"fifo{n}"
        )
        for n in range(gateways)
    ]
    server = servers[0]
    try:
        for one in servers:
            one.start()
        ids = _post_all(*servers)

        def all_sent() -> bool:
            crm = all(len(seen.succeeded[("/crm", c)]) == PER_CUSTOMER for c in CRM_CUSTOMERS)
            ledger = len(seen.succeeded[("/ledger", "E")]) == LEDGER_EVENTS
            ledger = ledger and len(seen.succeeded[("/ledger", "D")]) == LEDGER_EVENTS - 1
            return crm and ledger

        harness.wait_until(all_sent, timeout=90.0, interval=0.1)
        with server.admin() as admin:
            head = harness.wait_until(
                lambda: (
                    (d := _delivery(admin, ids[("order", "A", 0)]))["status"] == "succeeded" and d
                )
            )
            exhausted = _delivery(admin, ids[("ledger", "D", 0)])
            after_exhausted = _delivery(admin, ids[("ledger", "D", 1)])
    finally:
        for one in servers:
            one.stop()

    # every key's arrivals (retries included) in accept order: nothing overtook a head
    for (path, customer), arrived in seen.arrivals.items():
        assert arrived == sorted(arrived), (path, customer, arrived)
    for customer in CRM_CUSTOMERS:
        assert seen.succeeded[("/crm", customer)] == list(range(PER_CUSTOMER))
    assert seen.succeeded[("/ledger", "E")] == list(range(LEDGER_EVENTS))
    assert seen.succeeded[("/ledger", "D")] == list(range(1, LEDGER_EVENTS))
    # one at a time per key, with two worker processes claiming
    assert max(seen.most_in_flight.values()) == 1, dict(seen.most_in_flight)
    # A's head failed until B and C had all arrived: they went on while it was retried
    assert head["attempt_count"] >= 3, head
    assert seen.arrivals[("/crm", "A")][: head["attempt_count"]] == [0] * head["attempt_count"]
    # D's head failed for good after its retries; the next one of D went only then
    assert (exhausted["status"], exhausted["attempt_count"]) == ("failed", 3), exhausted
    assert seen.arrivals[("/ledger", "D")][:4] == [0, 0, 0, 1]
    assert after_exhausted["status"] == "succeeded", after_exhausted


# webhook targets: the same ordering, set through the API (in-process server, inline delivery)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ordering": "lifo"}, "ordering"),
        ({"ordering": True}, "ordering"),
        ({"ordering_key": {"var": "customerId"}}, "ordering_key"),
        ({"ordering": "fifo", "ordering_key": "customerId"}, "ordering_key"),
        ({"ordering": "fifo", "ordering_key": {"no_such_op": [1]}}, "ordering_key"),
    ],
)
def test_a_bad_target_ordering_is_refused(
    gateway: harness.Gateway, sink: harness.Sink, fields: dict[str, Any], field: str
) -> None:
    response = gateway.admin.post("/v1/webhook-targets", json={"url": sink.url("/t"), **fields})
    assert response.status_code == 422, response.text
    assert (response.json()["error"], response.json()["field"]) == ("validation_error", field)
    assert gateway.admin.get("/v1/webhook-targets").json()["data"] == []


def test_target_ordering_is_set_patched_and_dropped(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    created = gateway.admin.post(
        "/v1/webhook-targets",
        json={"url": sink.url("/t"), "ordering": "fifo", "ordering_key": {"var": "customerId"}},
    )
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    target = created.json()
    assert (target["ordering"], target["ordering_key"]) == ("fifo", {"var": "customerId"})
    path = f"/v1/webhook-targets/{target['id']}"

    rekeyed = gateway.admin.patch(path, json={"ordering_key": {"var": "accountId"}})
    assert rekeyed.status_code == 200, rekeyed.text
    assert (rekeyed.json()["ordering"], rekeyed.json()["ordering_key"]) == (
        "fifo",
        {"var": "accountId"},
    )
    dropped = gateway.admin.patch(path, json={"ordering": None})
    assert (dropped.json()["ordering"], dropped.json()["ordering_key"]) == (None, None)
    keyless = gateway.admin.patch(path, json={"ordering_key": {"var": "customerId"}})
    assert keyless.status_code == 422 and keyless.json()["field"] == "ordering_key"
    whole = gateway.admin.patch(path, json={"ordering": "fifo"})
    assert (whole.json()["ordering"], whole.json()["ordering_key"]) == ("fifo", None)
    assert gateway.admin.get(path).json() == whole.json()


def test_an_ordered_target_keeps_each_key_in_order_while_one_head_fails(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    arrivals: dict[str, list[int]] = defaultdict(list)
    succeeded: dict[str, list[int]] = defaultdict(list)

    async def respond(received: harness.Received) -> int:
        data = received.json()["data"]
        customer, seq = str(data["customerId"]), int(data["seq"])
        arrivals[customer].append(seq)
        # X's first delivery fails until every delivery of Y has arrived
        if (customer, seq) == ("X", 0) and (len(arrivals["X"]) <= 2 or len(succeeded["Y"]) < 3):
            return 500
        succeeded[customer].append(seq)
        return 200

    sink.respond = respond
    created = gateway.admin.post(
        "/v1/webhook-targets",
        json={
            "url": sink.url("/t"),
            "retry": [0.3] * 25,
            "ordering": "fifo",
            "ordering_key": {"var": "customerId"},
        },
    )
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    target_id = created.json()["id"]
    _, token = gateway.create_app("shop", burst=100)
    first = None
    for seq in range(3):
        for customer in ("X", "Y"):
            response = gateway.post_event(token, {"customerId": customer, "seq": seq})
            assert response.status_code == 202, response.text
            if (customer, seq) == ("X", 0):
                first = response.json()["event_id"]

    harness.wait_until(lambda: len(succeeded["X"]) == 3 and len(succeeded["Y"]) == 3, timeout=60)
    assert arrivals["X"][:3] == [0, 0, 0] and arrivals["X"] == sorted(arrivals["X"])
    assert arrivals["Y"] == [0, 1, 2]
    assert succeeded == {"X": [0, 1, 2], "Y": [0, 1, 2]}
    row = _delivery(gateway.admin, str(first))
    assert row["ordering_key"] == f'target:{target_id}#0|"X"'
    assert row["status"] == "succeeded" and row["attempt_count"] >= 3

"""Admin API answers that used to be wrong (issue 10, items 9-13), against a real gateway
under uvicorn with a real sink."""

from __future__ import annotations

from pathlib import Path

import harness
import pytest
from starlette.routing import Route

pytestmark = pytest.mark.e2e


def test_recover_with_empty_since_is_422_and_keeps_the_connection(
    gateway: harness.Gateway,
) -> None:
    for since in ("", None, True, [1]):
        response = gateway.admin.post("/v1/deliveries/recover", json={"since": since})
        assert response.status_code == 422, (since, response.text)
        assert response.json()["error"] == "validation_error"
        assert response.json()["field"] == "since"
    # The same keep-alive connection still answers.
    assert gateway.admin.get("/v1/deliveries").status_code == 200


def test_no_assert_on_request_data_in_gateway() -> None:
    for path in (harness.REPO / "gateway").rglob("*.py"):
        text = path.read_text()
        if "request" in text and "admin" in str(path.parent.name):
            assert "assert " not in text, path


@pytest.mark.parametrize(
    "path", ["/v1/events", "/v1/deliveries", "/v1/apps", "/v1/webhook-targets", "/v1/rules"]
)
def test_unknown_query_parameter_is_400_on_every_list(gateway: harness.Gateway, path: str) -> None:
    response = gateway.admin.get(path, params={"app": "chekkit"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == "app"
    bad = gateway.admin.get(path, params={"cursor": "zzz"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"] == "invalid_cursor"


def test_paged_lists_accept_their_own_cursor(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("pager")
    for n in range(3):
        assert gateway.post_event(token, {"type": "t", "n": n}).status_code == 202
    first = gateway.admin.get("/v1/events", params={"limit": 2}).json()
    assert first["next_cursor"]
    rest = gateway.admin.get("/v1/events", params={"limit": 2, "cursor": first["next_cursor"]})
    assert rest.status_code == 200
    assert [e["payload"]["n"] for e in rest.json()["data"]] == [0]


def test_405_lists_every_method_of_the_path(gateway: harness.Gateway) -> None:
    response = gateway.admin.put("/v1/apps")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = gateway.admin.put("/v1/apps/app_x")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    # Every path: the Allow header is the union of the methods of its routes.
    routes = [r for r in gateway.app.starlette.router.routes if isinstance(r, Route)]
    by_path: dict[str, set[str]] = {}
    for route in routes:
        by_path.setdefault(route.path, set()).update(route.methods or ())
    for path, methods in by_path.items():
        concrete = path.replace("{app_id}", "app_x").replace("{event_id}", "evt_x")
        concrete = concrete.replace("{target_id}", "wht_x").replace("{delivery_id}", "dlv_x")
        unused = "PUT" if "PUT" not in methods else "TRACE"
        answer = gateway.admin.request(unused, concrete)
        assert answer.status_code == 405, concrete
        allowed = set(answer.headers["allow"].split(", "))
        assert methods <= allowed, (concrete, allowed)


def test_retry_of_a_succeeded_delivery_needs_force(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    with harness.running_gateway(settings) as gw:
        target = gw.admin.post(
            "/v1/webhook-targets", json={"url": sink.url("/ok"), "events": ["paid"]}
        )
        assert target.status_code == 201, target.text
        harness.track_secret(target.json()["secret"])
        _, token = gw.create_app("shop")
        assert gw.post_event(token, {"type": "paid"}).status_code == 202
        sink.wait_for(1, "/ok")

        def succeeded() -> list[dict[str, object]]:
            rows = gw.admin.get("/v1/deliveries", params={"status": "succeeded"}).json()
            return list(rows["data"])

        delivery = harness.wait_until(succeeded)[0]
        refused = gw.admin.post(f"/v1/deliveries/{delivery['id']}/retry")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "already_succeeded"
        assert (
            gw.admin.post(
                f"/v1/deliveries/{delivery['id']}/retry", json={"force": "yes"}
            ).status_code
            == 422
        )
        forced = gw.admin.post(f"/v1/deliveries/{delivery['id']}/retry", json={"force": True})
        assert forced.status_code == 202, forced.text
        again = sink.wait_for(2, "/ok")
        assert again[1].headers["webhook-id"] == delivery["id"]


def test_rules_test_says_why_each_rule_did_not_match(tmp_path: Path) -> None:
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "r.toml").write_text(
        """
[[rules]]
id = "for-crm"
apps = ["crm"]
[[rules.actions]]
type = "webhook"
url = "https://example.com/a"

[[rules]]
id = "paid-only"
event_types = ["paid"]
[[rules.actions]]
type = "webhook"
url = "https://example.com/b"

[[rules]]
id = "needs-phone"
when = { "!!" = { var = "customer.phone" } }
[[rules.actions]]
type = "webhook"
url = "https://example.com/c"
body = { to = { var = "customer.phone" }, name = { var = "customer.name" } }
"""
    )
    settings = harness.make_settings(tmp_path)
    with harness.running_gateway(settings) as gw:
        target = gw.admin.post(
            "/v1/webhook-targets", json={"url": "http://127.0.0.1:9/t", "events": ["refund"]}
        )
        harness.track_secret(target.json()["secret"])
        response = gw.admin.post(
            "/v1/rules/test",
            json={"app": "shop", "event": {"type": "created", "customer": {"name": "A"}}},
        )
    assert response.status_code == 200, response.text
    verdicts = {v["rule_id"]: v for v in response.json()["rules"]}
    assert "not listed in apps" in verdicts["for-crm"]["reason"]
    assert "not listed in event_types" in verdicts["paid-only"]["reason"]
    assert verdicts["needs-phone"]["reason"] == "when was false"
    assert verdicts["needs-phone"]["missing_vars"] == ["customer.phone"]
    target_verdicts = [v for v in verdicts.values() if v["target_id"] == target.json()["id"]]
    assert len(target_verdicts) == 1 and "event_types" in target_verdicts[0]["reason"]

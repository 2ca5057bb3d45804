"""Rules at ingest: matched rule ids stored with the event, one delivery row per (match,
action), app and event-type filters, disabled rules; and `POST /v1/rules/test` dry runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
import orjson
import pytest
from standardwebhooks import Webhook

from gateway.version import __version__

pytestmark = pytest.mark.e2e


def action(url: str, **fields: Any) -> str:
    lines = ["", "  [[rules.actions]]", f'  type = "{fields.pop("type", "webhook")}"']
    lines.append(f'  url = "{url}"')
    lines += [f"  {key} = {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def rule(rule_id: str, *actions: str, **fields: str) -> str:
    """A `[[rules]]` table; `fields` are TOML values as written (`apps='["acme"]'`)."""
    head = [f'[[rules]]\nid = "{rule_id}"'] + [f"{key} = {value}" for key, value in fields.items()]
    return "\n".join(head) + "\n" + "".join(actions)


def load_rules(gateway: harness.Gateway, **files: str) -> None:
    """Write the rule files into the gateway's rules dir and reload (no waiting on the poll)."""
    rules_dir = Path(gateway.settings.rules.dir)
    rules_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (rules_dir / f"{name}.toml").write_text(text, encoding="utf-8")
    response = gateway.admin.post("/v1/rules/reload")
    assert response.status_code == 200, response.text


def post(gateway: harness.Gateway, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Post an event, return it as stored (`GET /v1/events/{id}`)."""
    response = gateway.post_event(token, payload)
    assert response.status_code == 202, response.text
    stored = gateway.admin.get(f"/v1/events/{response.json()['event_id']}")
    assert stored.status_code == 200
    return stored.json()


def matched(gateway: harness.Gateway, token: str, payload: dict[str, Any]) -> list[str]:
    return post(gateway, token, payload)["matched_rules"]


# -- stored matches and delivery rows -------------------------------------------------------


def test_matches_are_stored_with_one_delivery_row_per_match_and_action(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    _, token = gateway.create_app("acme")
    load_rules(
        gateway,
        jobs=rule(
            "two-actions",
            action(sink.url("/one"), body='{ phone = { var = "phone" } }'),
            action(sink.url("/two"), type="forward"),
            event_types='["job_completed"]',
        )
        + rule(
            "when-done",
            action(sink.url("/three")),
            when='{ "==" = [{ var = "status" }, "done"] }',
        )
        + rule("other-type", action(sink.url("/never")), event_types='["job_created"]')
        + rule(
            "when-open", action(sink.url("/never")), when='{ "==" = [{ var = "status" }, "open"] }'
        ),
    )

    event = post(gateway, token, {"event_type": "job_completed", "status": "done", "phone": "555"})

    assert event["matched_rules"] == ["two-actions", "when-done"]
    rows = {(d["rule_id"], d["action_type"], d["url"]) for d in event["deliveries"]}
    assert rows == {
        ("two-actions", "webhook", sink.url("/one")),
        ("two-actions", "forward", sink.url("/two")),
        ("when-done", "webhook", sink.url("/three")),
    }
    assert len(event["deliveries"]) == 3
    assert {d["event_id"] for d in event["deliveries"]} == {event["id"]}
    assert {d["target_id"] for d in event["deliveries"]} == {None}
    listed = gateway.admin.get("/v1/deliveries", params={"event_id": event["id"]}).json()
    assert sorted(d["id"] for d in listed["data"]) == sorted(d["id"] for d in event["deliveries"])

    sink.wait_for(3)
    assert [r.json() for r in sink.requests_to("/one")] == [{"phone": "555"}]
    assert sink.requests_to("/two")[0].json()["phone"] == "555"
    assert sink.requests_to("/three")[0].json()["data"]["status"] == "done"
    assert sink.requests_to("/never") == []


def test_without_rules_nothing_matches_and_no_delivery_exists(gateway: harness.Gateway) -> None:
    _, token = gateway.create_app("acme")
    rules = gateway.admin.get("/v1/rules").json()
    assert rules["data"] == [] and rules["errors"] == [] and rules["ok"] is True

    event = post(gateway, token, {"event_type": "job_completed", "phone": "555"})

    assert event["matched_rules"] == []
    assert event["deliveries"] == []
    listed = gateway.admin.get("/v1/deliveries", params={"event_id": event["id"]}).json()
    assert listed == {"data": [], "next_cursor": None}


def test_apps_filter_on_app_names_not_ids(gateway: harness.Gateway, sink: harness.Sink) -> None:
    acme_id, acme = gateway.create_app("acme")
    _, other = gateway.create_app("other")
    url = sink.url("/hook")
    load_rules(
        gateway,
        apps=rule("by-name", action(url), apps='["acme"]')
        + rule("by-id", action(url), apps=f'["{acme_id}"]')
        + rule("two-apps", action(url), apps='["nobody", "other"]')
        + rule("every-app", action(url)),
    )

    assert matched(gateway, acme, {"event_type": "x"}) == ["by-name", "every-app"]
    assert matched(gateway, other, {"event_type": "x"}) == ["two-apps", "every-app"]


def test_event_type_is_the_first_present_string_field(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    _, token = gateway.create_app("acme")
    url = sink.url("/hook")
    load_rules(
        gateway,
        types=rule("completed", action(url), event_types='["job_completed"]')
        + rule("created", action(url), event_types='["job_created", "job_reopened"]')
        + rule("any-type", action(url)),
    )
    both, one = ["completed", "any-type"], ["created", "any-type"]
    cases: list[tuple[dict[str, Any], str | None, list[str]]] = [
        ({"event_type": "job_completed"}, "job_completed", both),
        ({"eventType": "job_completed"}, "job_completed", both),
        ({"event": "job_reopened"}, "job_reopened", one),
        ({"type": "job_created"}, "job_created", one),
        ({"type": "job_completed", "event_type": "job_created"}, "job_created", one),
        ({"eventType": "job_completed", "event": "job_created"}, "job_completed", both),
        ({"event_type": 7, "eventType": None, "type": "job_completed"}, "job_completed", both),
        ({"kind": "job_completed"}, None, ["any-type"]),
        ({"event_type": "JOB_COMPLETED"}, "JOB_COMPLETED", ["any-type"]),
    ]
    for payload, event_type, expected in cases:
        event = post(gateway, token, payload)
        assert (event["event_type"], event["matched_rules"]) == (event_type, expected), payload


def test_configured_event_type_fields_drive_ingest_and_dry_run(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(tmp_path, ingest={"event_type_fields": ["kind", "type"]})
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        url = sink.url("/hook")
        load_rules(
            gateway,
            types=rule("completed", action(url), event_types='["job_completed"]')
            + rule("created", action(url), event_types='["job_created"]'),
        )
        payload = {"event_type": "job_created", "kind": "job_completed"}
        event = post(gateway, token, payload)
        assert (event["event_type"], event["matched_rules"]) == ("job_completed", ["completed"])
        assert matched(gateway, token, {"event_type": "job_created"}) == []
        assert matched(gateway, token, {"type": "job_created"}) == ["created"]
        dry = gateway.admin.post("/v1/rules/test", json={"app": "acme", "event": payload}).json()
        assert (dry["event_type"], dry["matched_rules"]) == ("job_completed", ["completed"])


def test_disabled_rules_never_match(gateway: harness.Gateway, sink: harness.Sink) -> None:
    _, token = gateway.create_app("acme")
    url = sink.url("/hook")
    load_rules(
        gateway,
        a=rule("off", action(url), enabled="false")
        + rule("off-typed", action(url), enabled="false", event_types='["job_completed"]')
        + rule("on", action(url), enabled="true"),
    )
    listed = {r["id"]: r["enabled"] for r in gateway.admin.get("/v1/rules").json()["data"]}
    assert listed == {"off": False, "off-typed": False, "on": True}

    event = post(gateway, token, {"event_type": "job_completed"})
    assert event["matched_rules"] == ["on"]
    assert [d["rule_id"] for d in event["deliveries"]] == ["on"]
    dry = gateway.admin.post(
        "/v1/rules/test", json={"app": "acme", "event": {"event_type": "job_completed"}}
    )
    assert dry.json()["matched_rules"] == ["on"]

    load_rules(gateway, a=rule("off", action(url), enabled="true"))
    assert matched(gateway, token, {"event_type": "job_completed"}) == ["off"]


# -- dry runs -----------------------------------------------------------------------------


def test_dry_run_renders_and_signs_but_sends_and_stores_nothing(
    gateway: harness.Gateway, sink: harness.Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_" + "c2VjcmV0LWZvci1kcnktcnVucy0xMjM0NTY3ODkw"
    harness.track_secret(secret)
    monkeypatch.setenv("HG_E2E_DRY_RUN_SECRET", secret)
    url = sink.url("/dry")
    load_rules(
        gateway,
        a=rule(
            "thank-you",
            action(
                url,
                secret_env='"HG_E2E_DRY_RUN_SECRET"',
                retry='"none"',
                headers='{ X-Tenant = "t1" }',
                body='{ to = { var = "phone" }, '
                'text = { cat = ["Thanks ", { var = "name" }, "!"] }, fixed = "literal", n = 3 }',
            ),
            apps='["acme"]',
            event_types='["job_completed"]',
            when='{ "!!" = { var = "phone" } }',
        )
        + rule("other-app", action(url), apps='["other"]'),
    )
    event = {"event_type": "job_completed", "phone": "+15550100", "name": "Ann"}

    response = gateway.admin.post("/v1/rules/test", json={"app": "acme", "event": event})

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["event_type"] == "job_completed"
    assert report["matched_rules"] == ["thank-you"]
    (request,) = report["requests"]
    headers = request.pop("headers")
    assert request == {
        "rule_id": "thank-you",
        "target_id": None,
        "action_type": "webhook",
        "method": "POST",
        "url": url,
        "retry": [],
        "body": {"to": "+15550100", "text": "Thanks Ann!", "fixed": "literal", "n": 3},
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"hookgate/{__version__}"
    assert headers["X-Tenant"] == "t1"
    signed = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    Webhook(secret).verify(orjson.dumps(request["body"]), signed)  # raises if wrong
    assert secret not in response.text

    # Nothing stored by the dry run ...
    assert gateway.admin.get("/v1/events").json()["data"] == []
    assert gateway.admin.get("/v1/deliveries").json()["data"] == []
    # ... and nothing sent: a real event to the same URL is the only request the sink gets.
    _, token = gateway.create_app("acme")
    real = post(gateway, token, event)
    assert real["matched_rules"] == ["thank-you"]
    (received,) = sink.wait_for(1, "/dry")
    assert received.headers["webhook-id"] == real["deliveries"][0]["id"]
    assert received.headers["webhook-id"] != signed["webhook-id"]
    assert len(sink.received) == 1


def test_dry_run_without_app_matches_only_rules_for_every_app(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    url = sink.url("/hook")
    load_rules(
        gateway,
        a=rule("acme-only", action(url), apps='["acme"]') + rule("every-app", action(url)),
    )
    report = gateway.admin.post("/v1/rules/test", json={"event": {"type": "ping"}}).json()
    assert report["event_type"] == "ping"
    assert report["matched_rules"] == ["every-app"]
    assert [r["rule_id"] for r in report["requests"]] == ["every-app"]
    none = gateway.admin.post("/v1/rules/test", json={"app": "x", "event": {}}).json()
    assert none["event_type"] is None and none["matched_rules"] == ["every-app"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "event"),
        ({"event": [1, 2]}, "event"),
        ({"event": "{}"}, "event"),
        ({"event": {}, "app": 5}, "app"),
    ],
)
def test_dry_run_refuses_malformed_requests(
    gateway: harness.Gateway, body: dict[str, Any], field: str
) -> None:
    response = gateway.admin.post("/v1/rules/test", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["field"] == field


def test_rules_endpoints_need_the_admin_token(gateway: harness.Gateway) -> None:
    for method, path in (
        ("GET", "/v1/rules"),
        ("POST", "/v1/rules/reload"),
        ("POST", "/v1/rules/test"),
    ):
        response = gateway.public.request(method, path, json={"event": {}})
        assert response.status_code == 401, (method, path)


# -- regex_match on hostile event data -------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_backtracking_pattern_on_a_hostile_value_does_not_stall_ingest(
    gateway: harness.Gateway, sink: harness.Sink
) -> None:
    # `^(a+)+$` against 10 000 `a`s and a `!` never finishes on a backtracking engine (22
    # characters already take about 250 ms); with RE2 the event is answered and the next one
    # too, well inside the client's 30 s timeout and this test's 60 s.
    _, token = gateway.create_app("acme")
    load_rules(
        gateway,
        hostile=rule(
            "all-a", action(sink.url("/a")), when='{ regex_match = ["^(a+)+$", { var = "v" }] }'
        ),
    )

    assert matched(gateway, token, {"v": "a" * 10_000 + "!"}) == []
    assert matched(gateway, token, {"v": "a" * 10_000}) == ["all-a"]

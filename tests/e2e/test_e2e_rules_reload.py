"""Hot reload of the rules directory on a running gateway: file edits within 2 s, broken
files keep the last good set, `POST /v1/rules/reload`, versions, readiness, and the atomic
swap (an event sees one whole rule set, never half of two)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import harness
import httpx
import pytest

from gateway.app import create_app

pytestmark = pytest.mark.e2e

RELOAD_DEADLINE = 2.0  # the promise: an edit changes matching within 2 s


def rule(rule_id: str, url: str, **fields: str) -> str:
    """One rule with one webhook action; `fields` are TOML values as written."""
    head = [f'[[rules]]\nid = "{rule_id}"'] + [f"{key} = {value}" for key, value in fields.items()]
    return "\n".join(head) + f'\n[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\n'


def write_atomically(path: Path, text: str) -> None:
    """Write as careful tools do (temp file + rename), so a poll never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def rules_of(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/rules")
    assert response.status_code == 200
    return response.json()


def dry_matches(client: httpx.Client, app: str, event: dict[str, Any]) -> list[str]:
    response = client.post("/v1/rules/test", json={"app": app, "event": event})
    assert response.status_code == 200, response.text
    return response.json()["matched_rules"]


def post(gateway: harness.Gateway, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = gateway.post_event(token, payload)
    assert response.status_code == 202, response.text
    return gateway.admin.get(f"/v1/events/{response.json()['event_id']}").json()


# -- hot reload by polling -------------------------------------------------------------------


def test_editing_a_rule_file_changes_matching_within_two_seconds(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(tmp_path)
    path = Path(settings.rules.dir) / "jobs.toml"
    write_atomically(path, rule("r1", sink.url("/hook"), event_types='["job_created"]'))
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        completed = {"event_type": "job_completed"}
        assert post(gateway, token, completed)["matched_rules"] == []
        before = rules_of(gateway.admin)

        path.write_text(
            rule("r1", sink.url("/hook"), event_types='["job_completed", "job_reopened"]'),
            encoding="utf-8",
        )  # in place, as an editor without atomic saves would
        harness.wait_until(
            lambda: dry_matches(gateway.admin, "acme", completed) == ["r1"],
            timeout=RELOAD_DEADLINE,
        )

        event = post(gateway, token, completed)
        assert event["matched_rules"] == ["r1"]
        assert [d["rule_id"] for d in event["deliveries"]] == ["r1"]
        after = rules_of(gateway.admin)
        assert after["version"] != before["version"]
        assert after["ok"] is True and after["errors"] == []
        (listed,) = after["data"]
        assert listed["id"] == "r1" and listed["source"] == str(path)
        assert sorted(listed["event_types"]) == ["job_completed", "job_reopened"]


def test_new_and_deleted_files_are_picked_up(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    rules_dir = Path(settings.rules.dir)
    write_atomically(rules_dir / "a.toml", rule("a1", sink.url("/hook")))
    with harness.running_gateway(settings) as gateway:
        write_atomically(rules_dir / "b.toml", rule("b1", sink.url("/hook")))
        harness.wait_until(
            lambda: dry_matches(gateway.admin, "acme", {}) == ["a1", "b1"],
            timeout=RELOAD_DEADLINE,
        )
        assert rules_of(gateway.admin)["files"] == [
            str(rules_dir / "a.toml"),
            str(rules_dir / "b.toml"),
        ]
        (rules_dir / "a.toml").unlink()
        harness.wait_until(
            lambda: dry_matches(gateway.admin, "acme", {}) == ["b1"], timeout=RELOAD_DEADLINE
        )
        assert [r["source"] for r in rules_of(gateway.admin)["data"]] == [str(rules_dir / "b.toml")]


def test_a_broken_file_keeps_the_previous_rules_and_shows_the_error(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(tmp_path)
    path = Path(settings.rules.dir) / "jobs.toml"
    good = rule("r1", sink.url("/hook"), event_types='["job_completed"]')
    write_atomically(path, good)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        before = rules_of(gateway.admin)

        write_atomically(
            path,
            rule(
                "r1",
                sink.url("/hook"),
                event_types='["job_created"]',
                when='{ "no_such_op" = [1] }',
            ),
        )
        state = harness.wait_until(
            lambda: (r := rules_of(gateway.admin))["ok"] is False and r,
            timeout=RELOAD_DEADLINE,
        )

        (error,) = state["errors"]
        assert error["file"] == str(path)
        assert error["rule_id"] == "r1"
        assert error["message"].startswith("when: ") and "no_such_op" in error["message"]
        assert error["text"] == f"{path}:r1: {error['message']}"
        assert state["version"] == before["version"]
        assert state["data"] == before["data"]
        assert state["loaded_at"] == before["loaded_at"]
        # The old rule still matches at ingest, and its action still fires.
        event = post(gateway, token, {"event_type": "job_completed"})
        assert event["matched_rules"] == ["r1"]
        sink.wait_for(1, "/hook")
        assert post(gateway, token, {"event_type": "job_created"})["matched_rules"] == []
        # The log says what is wrong, too.
        assert any(error["text"] in line for line in harness.LOG_LINES)

        write_atomically(path, rule("r1", sink.url("/hook"), event_types='["job_created"]'))
        fixed = harness.wait_until(
            lambda: (r := rules_of(gateway.admin))["ok"] is True and r, timeout=RELOAD_DEADLINE
        )
        assert fixed["errors"] == []
        assert fixed["version"] != before["version"]
        assert post(gateway, token, {"event_type": "job_created"})["matched_rules"] == ["r1"]


# -- POST /v1/rules/reload ------------------------------------------------------------------


def test_reload_endpoint_swaps_valid_rules_and_refuses_invalid_ones(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(tmp_path, rules={"reload": False})  # no polling
    rules_dir = Path(settings.rules.dir)
    url = sink.url("/hook")
    write_atomically(rules_dir / "a.toml", rule("r1", url, event_types='["a"]'))
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        v0 = rules_of(gateway.admin)["version"]

        same = gateway.admin.post("/v1/rules/reload")
        assert same.status_code == 200
        assert same.json() == {"ok": True, "version": v0, "rules": 1}

        write_atomically(rules_dir / "a.toml", rule("r1", url, event_types='["b"]'))
        write_atomically(rules_dir / "b.toml", rule("r2", url))
        assert post(gateway, token, {"event_type": "b"})["matched_rules"] == []  # not yet
        changed = gateway.admin.post("/v1/rules/reload")
        assert changed.status_code == 200
        v1 = changed.json()["version"]
        assert changed.json() == {"ok": True, "version": v1, "rules": 2}
        assert v1 != v0
        listed = rules_of(gateway.admin)
        assert listed["version"] == v1
        assert [(r["id"], r["source"]) for r in listed["data"]] == [
            ("r1", str(rules_dir / "a.toml")),
            ("r2", str(rules_dir / "b.toml")),
        ]
        assert post(gateway, token, {"event_type": "b"})["matched_rules"] == ["r1", "r2"]

        write_atomically(rules_dir / "a.toml", rule("r1", url, evnt_types='["c"]'))
        write_atomically(rules_dir / "b.toml", rule("r2", "ftp://example.com/x"))
        write_atomically(rules_dir / "c.toml", rule("r1", url))
        refused = gateway.admin.post("/v1/rules/reload")

        assert refused.status_code == 422
        body = refused.json()
        assert body["error"] == "invalid_rules"
        assert body["detail"] == "3 error(s); the previous rule set stays active"
        assert body["version"] == v1
        assert [(e["file"], e["rule_id"]) for e in body["errors"]] == [
            (str(rules_dir / "a.toml"), "r1"),
            (str(rules_dir / "b.toml"), "r2"),
            (str(rules_dir / "c.toml"), "r1"),
        ]
        messages = [e["message"] for e in body["errors"]]
        assert messages[0].startswith('unknown key "evnt_types" (did you mean "event_types"?)')
        assert messages[1].startswith("actions[0].url: ")
        assert messages[2].startswith('id: duplicate rule id "r1"')
        state = rules_of(gateway.admin)
        assert state["ok"] is False
        assert state["errors"] == body["errors"]
        assert state["version"] == v1
        assert post(gateway, token, {"event_type": "b"})["matched_rules"] == ["r1", "r2"]

        (rules_dir / "c.toml").unlink()
        write_atomically(rules_dir / "a.toml", rule("r1", url, event_types='["b"]'))
        write_atomically(rules_dir / "b.toml", rule("r2", url))
        back = gateway.admin.post("/v1/rules/reload")
        assert back.json() == {"ok": True, "version": v1, "rules": 2}  # same content, same version
        assert rules_of(gateway.admin)["errors"] == []


def test_a_successful_reload_re_enables_rule_actions_disabled_after_failures(
    tmp_path: Path, sink: harness.Sink
) -> None:
    """A rule action with `disable_after` stops after that many failures until the rules
    are reloaded; an edit picked up by the poll counts as a reload, like the API's."""
    settings = harness.make_settings(tmp_path)
    path = Path(settings.rules.dir) / "flaky.toml"
    text = rule("flaky", sink.url("/flaky"))
    text = text.replace('type = "webhook"', 'type = "webhook"\nretry = "none"\ndisable_after = 1')
    write_atomically(path, text)
    sink.statuses["/flaky"] = 500
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")

        def status_of(event_id: str) -> str:
            event = gateway.admin.get(f"/v1/events/{event_id}").json()
            return event["deliveries"][0]["status"]

        first = post(gateway, token, {})["id"]
        harness.wait_until(lambda: status_of(first) == "failed")
        second = post(gateway, token, {})["id"]
        harness.wait_until(lambda: status_of(second) == "skipped")
        assert len(sink.requests_to("/flaky")) == 1

        sink.statuses["/flaky"] = 200
        reloaded_before = rules_of(gateway.admin)["last_reload_at"]
        write_atomically(path, text + "\n# touched\n")
        harness.wait_until(
            lambda: rules_of(gateway.admin)["last_reload_at"] != reloaded_before,
            timeout=RELOAD_DEADLINE,
        )
        third = post(gateway, token, {})["id"]
        harness.wait_until(lambda: status_of(third) == "succeeded")
        assert len(sink.requests_to("/flaky")) == 2


# -- readiness ------------------------------------------------------------------------------


def test_readyz_reports_the_loaded_rule_set(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    write_atomically(Path(settings.rules.dir) / "a.toml", rule("r1", sink.url("/hook")))
    with harness.running_gateway(settings) as gateway:
        ready = gateway.public.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "rules_version": rules_of(gateway.admin)["version"],
        }


def test_broken_rules_at_startup_not_ready_but_ingest_serves(
    tmp_path: Path, sink: harness.Sink
) -> None:
    """With no valid rule set yet, /readyz answers 503 (keep this instance out of rotation)
    while ingest keeps accepting events, matching nothing; fixing the file makes it ready.

    The 503 is the behaviour under test, so this server runs without the harness's 5xx
    watch and without request logging (both would count the 503 as a failure)."""
    settings = harness.make_settings(tmp_path, log={"requests": False})
    path = Path(settings.rules.dir) / "a.toml"
    write_atomically(path, "[[rules]\nbroken")
    app = create_app(settings)
    auth = {"authorization": f"Bearer {harness.ADMIN_TOKEN}"}
    with (
        harness.serve_in_thread(app) as url,
        httpx.Client(base_url=url, headers=auth, trust_env=False, timeout=30) as client,
    ):
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {
            "error": "not_ready",
            "detail": "no valid rule set has been loaded",
        }
        state = rules_of(client)
        assert state["ok"] is False and state["loaded_at"] is None and state["data"] == []
        assert [(e["file"], e["rule_id"]) for e in state["errors"]] == [(str(path), None)]

        created = client.post("/v1/apps", json={"name": "acme"}).json()
        harness.track_secret(created["token"])
        accepted = client.post(f"/api/event/{created['token']}", json={"event_type": "x"})
        assert accepted.status_code == 202
        event = client.get(f"/v1/events/{accepted.json()['event_id']}").json()
        assert event["matched_rules"] == [] and event["deliveries"] == []

        write_atomically(path, rule("r1", sink.url("/hook")))
        harness.wait_until(
            lambda: client.get("/readyz").status_code == 200, timeout=RELOAD_DEADLINE
        )
        assert rules_of(client)["ok"] is True


# -- atomic swap ----------------------------------------------------------------------------


def generation(name: str, url: str) -> tuple[str, str]:
    """Two files (a, b) for generation "x" or "y". Each file carries a guard rule id that
    the other generation's other file also uses, so a directory caught between two
    generations (a from one, b from the other) has a duplicate id and cannot load: every
    set that can load is one whole generation."""
    other = "y" if name == "x" else "x"
    a = rule(f"{name}-a", url) + rule(f"guard-{other}", url)
    b = rule(f"{name}-b", url) + rule(f"guard-{name}", url)
    return a, b


def test_events_see_one_whole_rule_set_while_files_are_rewritten(
    tmp_path: Path, sink: harness.Sink
) -> None:
    limits = {"app_rate": 100_000, "app_burst": 100_000, "global_rate": 100_000}
    settings = harness.make_settings(
        tmp_path,
        limits={**limits, "global_burst": 100_000},
        rules={"poll_seconds": 0.05},
    )
    rules_dir = Path(settings.rules.dir)
    url = sink.url("/hook")
    sets = {
        "x": ["x-a", "guard-y", "x-b", "guard-x"],
        "y": ["y-a", "guard-x", "y-b", "guard-y"],
    }
    a, b = generation("x", url)
    write_atomically(rules_dir / "a.toml", a)
    write_atomically(rules_dir / "b.toml", b)
    with harness.running_gateway(settings) as gateway:
        app_id, token = gateway.create_app("acme")
        versions = {"x": rules_of(gateway.admin)["version"]}
        stop = threading.Event()
        accepted: list[str] = []
        failures: list[str] = []

        def post_events() -> None:
            with httpx.Client(base_url=gateway.base_url, trust_env=False, timeout=30) as client:
                while not stop.is_set():
                    response = client.post(f"/api/event/{token}", json={"event_type": "tick"})
                    if response.status_code != 202:
                        failures.append(response.text)
                        return
                    accepted.append(response.json()["event_id"])

        posters = [threading.Thread(target=post_events) for _ in range(3)]
        for thread in posters:
            thread.start()
        try:
            for step in range(10):
                name = "y" if step % 2 == 0 else "x"
                a, b = generation(name, url)
                write_atomically(rules_dir / "a.toml", a)
                half = gateway.admin.post("/v1/rules/reload")  # the poll may race us: fine
                assert half.status_code == 422, half.text
                assert any("duplicate rule id" in e["message"] for e in half.json()["errors"])
                write_atomically(rules_dir / "b.toml", b)
                whole = gateway.admin.post("/v1/rules/reload")
                assert whole.status_code == 200, whole.text
                versions.setdefault(name, whole.json()["version"])
                assert whole.json()["version"] == versions[name]
                seen = len(accepted)
                harness.wait_until(lambda seen=seen: len(accepted) >= seen + 5 or failures)
        finally:
            stop.set()
            for thread in posters:
                thread.join(timeout=30)
        assert failures == []
        assert versions["x"] != versions["y"]

        observed: dict[str, int] = {"x": 0, "y": 0}
        cursor: str | None = None
        count = 0
        while True:
            params: dict[str, Any] = {"app_id": app_id, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = gateway.admin.get("/v1/events", params=params).json()
            for event in page["data"]:
                count += 1
                whole_sets = [n for n, ids in sets.items() if event["matched_rules"] == ids]
                assert whole_sets, f"{event['id']} matched {event['matched_rules']}"
                observed[whole_sets[0]] += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert count == len(accepted)
        assert observed["x"] > 0 and observed["y"] > 0, observed

"""Console actions over HTTP that the browser walk does not press: Replay (console and
API share `replay_event`), Recover since… (count first, then re-send), target deletion
behind a confirmation."""

from __future__ import annotations

import re
from pathlib import Path

import harness
import httpx
import pytest

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def test_replay_recover_and_delete_from_the_console(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    rules_dir = Path(settings.rules.dir)
    rules_dir.mkdir(parents=True)
    sink.statuses["/down"] = 500
    (rules_dir / "rules.toml").write_text(
        f"""
[[rules]]
id = "notify"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/down")}"
  retry = "none"
"""
    )
    with (
        harness.running_gateway(settings) as gw,
        httpx.Client(base_url=gw.base_url, trust_env=False, timeout=30) as client,
    ):
        _, token = gw.create_app("shop")
        event_id = gw.post_event(token, {"event_type": "x"}).json()["event_id"]
        assert (
            client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN}).status_code == 303
        )
        page = client.get(f"/console/events/{event_id}")
        match = CSRF.search(page.text)
        assert match is not None
        csrf = match.group(1)

        replayed = client.post(
            f"/console/events/{event_id}/replay", data={"csrf": csrf}, follow_redirects=True
        )
        assert "Replayed: 1 delivery(ies) queued." in replayed.text
        api = gw.admin.post(f"/v1/events/{event_id}/replay")
        assert api.status_code == 202 and api.json()["matched_rules"] == ["notify"]

        def all_failed() -> bool:
            deliveries = gw.admin.get(f"/v1/events/{event_id}").json()["deliveries"]
            return len(deliveries) == 3 and all(d["status"] == "failed" for d in deliveries)

        harness.wait_until(all_failed)
        assert len(sink.requests_to("/down")) == 3

        count = client.get("/console/deliveries/recover", params={"since": "0"})
        assert "3 failed delivery(ies) since 0" in count.text
        assert len(sink.requests_to("/down")) == 3  # asking sent nothing
        done = client.post("/console/deliveries/recover", data={"csrf": csrf, "since": "0"})
        assert "3 delivery(ies) queued again." in done.text
        sink.wait_for(6, "/down")

        target = gw.admin.post("/v1/webhook-targets", json={"url": sink.url("/t")}).json()
        harness.track_secret(target["secret"])
        ask = client.get(f"/console/targets/{target['id']}/delete")
        assert "Delete " in ask.text and ask.status_code == 200
        unconfirmed = client.post(f"/console/targets/{target['id']}/delete", data={"csrf": csrf})
        assert unconfirmed.status_code == 200  # the confirmation page again
        assert gw.admin.get(f"/v1/webhook-targets/{target['id']}").status_code == 200
        deleted = client.post(
            f"/console/targets/{target['id']}/delete", data={"csrf": csrf, "confirm": "yes"}
        )
        assert deleted.status_code == 303
        assert gw.admin.get(f"/v1/webhook-targets/{target['id']}").status_code == 404
        # A bad form value is a page with the reason, not a 500.
        bad = client.post("/console/apps", data={"csrf": csrf, "name": "x", "rate": "fast"})
        assert bad.status_code == 422 and "rate: must be a number" in bad.text


def test_a_disabled_targets_page_links_its_held_deliveries_and_saving_active_sends_them(
    tmp_path: Path, sink: harness.Sink
) -> None:
    settings = harness.make_settings(tmp_path)
    with (
        harness.running_gateway(settings) as gw,
        httpx.Client(base_url=gw.base_url, trust_env=False, timeout=30) as client,
    ):
        _, token = gw.create_app("shop")
        target = gw.admin.post("/v1/webhook-targets", json={"url": sink.url("/t")}).json()
        harness.track_secret(target["secret"])
        gw.admin.patch(f"/v1/webhook-targets/{target['id']}", json={"status": "disabled"})
        event_id = gw.post_event(token, {"event_type": "x", "n": 1}).json()["event_id"]
        assert client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN}).status_code
        page = client.get(f"/console/targets/{target['id']}")
        assert "Disabled by hand" in page.text
        held_link = f"/console/deliveries?status=held&amp;target_id={target['id']}"
        assert held_link in page.text
        listed = client.get(held_link.replace("&amp;", "&"))
        assert event_id in listed.text and "status-held" in listed.text
        assert sink.requests_to("/t") == []

        match = CSRF.search(page.text)
        assert match is not None
        saved = client.post(
            f"/console/targets/{target['id']}",
            data={"csrf": match.group(1), "url": sink.url("/t"), "status": "active"},
        )
        assert saved.status_code == 303
        [received] = sink.wait_for(1, "/t", timeout=10.0)
        assert received.json()["id"] == event_id

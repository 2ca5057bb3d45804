"""The console in a real headless Chromium, along a person's path: sign in, create an
app, watch an event arrive without a reload, follow its delivery to a loopback sink,
retry it, test the rules, add an ordered target and send it a test, sign out."""

from __future__ import annotations

import re
from pathlib import Path

import harness
import pytest
from console_browser import chromium_page, shoot

pytestmark = pytest.mark.e2e


def test_operator_path_through_the_console(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    rules_dir = Path(settings.rules.dir)
    rules_dir.mkdir(parents=True)
    (rules_dir / "rules.toml").write_text(
        f"""
[[rules]]
id = "notify"
event_types = ["order.created"]

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/orders")}"
  retry = "none"

[[rules]]
id = "big-orders"
event_types = ["order.created"]
when = {{ ">" = [{{ var = "total" }}, 1000] }}

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/big")}"
"""
    )
    with harness.running_gateway(settings) as gw, chromium_page() as page:
        base = gw.base_url
        # Without a session every console URL goes to sign-in.
        page.goto(f"{base}/console/events")
        assert page.url == f"{base}/console/sign-in"
        shoot(page, "sign-in")
        page.get_by_label("Admin token").fill(harness.ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/console/")
        page.goto(f"{base}/console/events")
        assert "No events yet" in page.content()
        assert harness.ADMIN_TOKEN not in page.content()

        # Create an app and read its event URL (shown once).
        page.goto(f"{base}/console/apps")
        page.get_by_label("Name").fill("shop")
        page.get_by_role("button", name="Create app").click()
        url = page.get_by_label("Event URL").input_value()
        assert url.startswith("http://127.0.0.1:9/api/event/")
        token = url.rsplit("/", 1)[1]
        harness.track_secret(token)
        shoot(page, "app-created")

        # The events page polls: the event appears without a reload.
        page.goto(f"{base}/console/events")
        page.evaluate("window.__same_page = true")
        response = gw.post_event(token, {"event_type": "order.created", "total": 20})
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        link = page.get_by_role("link", name=event_id)
        link.wait_for(timeout=15_000)
        assert page.evaluate("window.__same_page") is True  # no navigation happened
        shoot(page, "events")

        # Open it: payload, matched rule, delivery to the sink.
        link.click()
        page.wait_for_url(f"{base}/console/events/{event_id}")
        assert '"total": 20' in page.locator("#payload").inner_text()
        sink.wait_for(1, "/orders")
        page.reload()
        delivery_link = page.locator("#deliveries a").first
        delivery_id = delivery_link.inner_text()
        shoot(page, "event")
        delivery_link.click()
        page.wait_for_url(f"{base}/console/deliveries/{delivery_id}")

        def attempts_shown(n: int) -> bool:
            page.reload()
            return page.locator("#attempts tbody tr").count() >= n

        harness.wait_until(lambda: attempts_shown(1))
        assert page.locator("#status").inner_text() == "succeeded"

        # Retry (it succeeded, so force) and see the second attempt.
        page.get_by_label("send again although it succeeded").check()
        # A plain form POST answered 303: reloading before that navigation ends detaches
        # the page ("Not attached to an active page"), so wait for it first.
        with page.expect_navigation():
            page.get_by_role("button", name="Retry").click()
        harness.wait_until(lambda: attempts_shown(2))
        assert len(sink.requests_to("/orders")) == 2
        # The second attempt's request as sent (line, headers, body) and the answer.
        sent = page.locator("#attempt-2 pre.request").inner_text()
        assert sent.startswith(f"POST {sink.url('/orders')}")
        assert "content-type: application/json" in sent.lower()
        assert event_id in sent
        assert page.locator("#attempt-2 pre.response").inner_text().startswith("200")
        shoot(page, "delivery")
        page.goto(f"{base}/console/deliveries")
        shoot(page, "deliveries")

        # The rule tester on the stored event: notify matches, big-orders says why not.
        page.goto(f"{base}/console/rules")
        page.get_by_label("Stored event id (or paste an event below)").fill(event_id)
        page.get_by_role("button", name="Test").click()
        result = page.locator("#tester-result")
        result.wait_for()
        rows = result.locator("tbody tr").all_inner_texts()
        assert any(r.startswith("notify") and "yes" in r for r in rows), rows
        big = next(r for r in rows if r.startswith("big-orders"))
        assert "\tno\t" in big and big.split("\t")[2].strip(), rows
        assert sink.url("/orders") in result.inner_text()
        assert len(sink.requests_to("/orders")) == 2  # nothing was sent
        shoot(page, "rules")

        # Create a target and send it a test.
        page.goto(f"{base}/console/targets")
        page.get_by_label("URL").fill(sink.url("/target"))
        page.get_by_label("Ordering", exact=True).select_option("fifo")
        page.get_by_label("Ordering key").fill('{"var": "customerId"}')
        page.get_by_label("Probe again after").fill("30m")
        page.get_by_role("button", name="Add target").click()
        secret = page.locator("#target-secret").input_value()
        harness.track_secret(secret)
        shown = page.locator("#shown-ordering").inner_text()
        assert shown == 'fifo, key {"var": "customerId"}', shown
        assert page.get_by_label("Probe again after").input_value() == "30m"
        [made] = gw.admin.get("/v1/webhook-targets").json()["data"]
        assert made["ordering"] == "fifo" and made["reenable_after"] == 1800
        assert made["ordering_key"] == {"var": "customerId"}
        page.get_by_role("button", name="Send test").click()
        result = page.locator("#test-result")
        result.wait_for()
        assert "succeeded" in result.inner_text()
        assert re.search(r"Response status\s+200", result.inner_text())
        assert len(sink.requests_to("/target")) == 1
        shoot(page, "target")

        # The overview counts what this server saw and draws it.
        page.goto(f"{base}/console/")
        assert "1 events accepted" in page.content() or "2 events accepted" in page.content()
        assert page.locator("svg.chart").count() == 2
        shoot(page, "overview")
        page.goto(f"{base}/console/apps")
        shoot(page, "apps")

        # Sign out: back to sign-in, and the console is closed again.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base}/console/sign-in")
        page.goto(f"{base}/console/apps")
        assert page.url == f"{base}/console/sign-in"

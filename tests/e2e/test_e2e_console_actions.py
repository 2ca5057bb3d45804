"""Console actions over HTTP that the browser walk does not press: Replay (console and
API share `replay_event`), Recover since… (count first, then re-send), target deletion
behind a confirmation, and the target form's every field (read back through the API, and
refused with the API's message)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import harness
import httpx
import pytest
from markupsafe import escape

from actions import generate_secret

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


def _sign_in(client: httpx.Client) -> str:
    """Sign in and return the session's CSRF token."""
    assert client.post("/console/sign-in", data={"token": harness.ADMIN_TOKEN}).status_code == 303
    match = CSRF.search(client.get("/console/targets").text)
    assert match is not None
    return match.group(1)


@contextlib.contextmanager
def _signed_in(tmp_path: Path) -> Iterator[tuple[harness.Gateway, httpx.Client, str]]:
    """A running gateway, a console client signed in to it, and the session's CSRF token."""
    with (
        harness.running_gateway(harness.make_settings(tmp_path)) as gw,
        httpx.Client(base_url=gw.base_url, trust_env=False, timeout=30) as client,
    ):
        yield gw, client, _sign_in(client)


def _created_id(page: httpx.Response) -> str:
    """The new target's id from the page the create form answers with (secret tracked)."""
    assert page.status_code == 201, page.text
    secret = re.search(r'id="target-secret" readonly value="([^"]+)"', page.text)
    assert secret is not None
    harness.track_secret(secret.group(1))
    found = re.search(r"<h1>Target <code>(wht_[^<]+)</code>", page.text)
    assert found is not None
    return found.group(1)


def test_target_form_creates_ordering_reenable_retry_and_disable_after(
    tmp_path: Path, sink: harness.Sink
) -> None:
    with _signed_in(tmp_path) as (gw, client, csrf):
        form = {
            "csrf": csrf,
            "url": sink.url("/ordered"),
            "events": "order.created, order.paid",
            "description": "orders, one customer at a time",
            "retry": "5, 30",
            "disable_after": "never",
            "reenable_after": "2h",
            "ordering": "fifo",
            "ordering_key": '{"var": "customerId"}',
        }
        target_id = _created_id(client.post("/console/targets", data=form))
        record = gw.admin.get(f"/v1/webhook-targets/{target_id}").json()
        assert record["ordering"] == "fifo"
        assert record["ordering_key"] == {"var": "customerId"}
        assert record["reenable_after"] == 7200
        assert record["retry"] == [5, 30] and record["disable_after"] is None
        assert record["events"] == ["order.created", "order.paid"]
        assert record["description"] == "orders, one customer at a time"
        # The page shows what is set, and the edit form offers it back as typed.
        page = client.get(f"/console/targets/{target_id}").text
        assert '<dd id="shown-ordering">fifo, key <code>{"var": "customerId"}</code>' in page
        assert '<dd id="shown-reenable-after">2h</dd>' in page
        assert '<dd id="shown-disable-after">never</dd>' in page
        assert 'name="reenable_after" value="2h"' in page
        assert 'name="disable_after" value="never"' in page
        assert 'name="retry" value="5, 30"' in page
        assert '<option value="fifo" selected>' in page

        # Every new field left blank is what leaving the key out of the API's create is.
        blank = {k: "" for k in form} | {"csrf": csrf, "url": sink.url("/plain")}
        plain_id = _created_id(client.post("/console/targets", data=blank))
        by_api = gw.admin.post("/v1/webhook-targets", json={"url": sink.url("/plain")}).json()
        harness.track_secret(by_api["secret"])
        plain = gw.admin.get(f"/v1/webhook-targets/{plain_id}").json()
        same = ("retry", "disable_after", "reenable_after", "ordering", "ordering_key", "filter")
        assert {k: plain[k] for k in same} == {k: by_api[k] for k in same}
        assert plain["retry"] == "standard" and plain["disable_after"] == 3
        assert plain["reenable_after"] == 600 and plain["ordering"] is None


def test_target_form_edits_ordering_and_reenable_after_and_blank_restores_defaults(
    tmp_path: Path, sink: harness.Sink
) -> None:
    with _signed_in(tmp_path) as (gw, client, csrf):
        target = gw.admin.post("/v1/webhook-targets", json={"url": sink.url("/t")}).json()
        harness.track_secret(target["secret"])
        path = f"/console/targets/{target['id']}"
        form = {"csrf": csrf, "url": sink.url("/t"), "status": "active"}
        edited = {
            "ordering": "fifo",
            "ordering_key": '{"cat": [{"var": "tenant"}, "/", {"var": "customerId"}]}',
            "reenable_after": "90s",
            "retry": "none",
            "disable_after": "5",
        }
        saved = client.post(path, data=form | edited)
        assert saved.status_code == 303 and saved.headers["location"] == path
        record = gw.admin.get(f"/v1/webhook-targets/{target['id']}").json()
        assert record["ordering"] == "fifo"
        assert record["ordering_key"] == {"cat": [{"var": "tenant"}, "/", {"var": "customerId"}]}
        assert record["reenable_after"] == 90 and record["retry"] == "none"
        assert record["disable_after"] == 5
        assert 'name="reenable_after" value="90s"' in client.get(path).text

        # Saving the fields blank sets them back to the defaults, as a create without them.
        cleared = client.post(path, data=form | {k: "" for k in edited})
        assert cleared.status_code == 303
        record = gw.admin.get(f"/v1/webhook-targets/{target['id']}").json()
        assert record["ordering"] is None and record["ordering_key"] is None
        assert record["reenable_after"] == 600 and record["retry"] == "standard"
        assert record["disable_after"] == 3

        # A new signing secret is refused with the API's message, or shown once when set.
        short = client.post(path, data=form | {"secret": "whsec_short"})
        assert short.status_code == 422 and 'id="secret-error">secret: ' in short.text
        assert "whsec_short" not in short.text  # a typed secret is not shown again
        new_secret = generate_secret()
        harness.track_secret(new_secret)
        rotated = client.post(path, data=form | {"secret": new_secret})
        assert rotated.status_code == 200
        assert "Saved. The signing secret is shown this once" in rotated.text
        assert f'id="target-secret" readonly value="{new_secret}"' in rotated.text
        assert "Saved." not in client.get(path).text


def test_target_form_bad_ordering_key_shows_the_api_message_and_stores_nothing(
    tmp_path: Path, sink: harness.Sink
) -> None:
    with _signed_in(tmp_path) as (gw, client, csrf):
        form = {"csrf": csrf, "url": sink.url("/t"), "ordering": "fifo", "description": "kept"}
        for key, message in [
            ('{"var": "customerId"', "ordering_key: is not valid JSON"),
            ('{"no-such-op": [1]}', "ordering_key: is not a valid JSON-Logic expression"),
            ('"customerId"', "ordering_key: must be a JSON-Logic expression"),
        ]:
            page = client.post("/console/targets", data=form | {"ordering_key": key})
            assert page.status_code == 422, page.text
            assert f'<p class="error" role="alert" id="ordering_key-error">{message}' in page.text
            assert 'aria-invalid="true" aria-describedby="ordering_key-error"' in page.text
            # The form comes back with what was typed, to correct it.
            assert escape(key) in page.text and 'value="kept"' in page.text
        # The API's own answer for the same body is the message the form shows.
        api = gw.admin.post(
            "/v1/webhook-targets",
            json={"url": sink.url("/t"), "ordering": "fifo", "ordering_key": "customerId"},
        )
        assert api.status_code == 422 and api.json()["field"] == "ordering_key"
        assert escape(api.json()["detail"]) in page.text
        unordered = client.post(
            "/console/targets", data=form | {"ordering": "", "ordering_key": '{"var": "x"}'}
        )
        assert unordered.status_code == 422
        assert "ordering_key: only an ordered target has a key" in unordered.text
        assert gw.admin.get("/v1/webhook-targets").json()["data"] == []

        # On edit too: refused, shown beside the form, and the target is left as it was.
        target = gw.admin.post("/v1/webhook-targets", json={"url": sink.url("/t")}).json()
        harness.track_secret(target["secret"])
        path = f"/console/targets/{target['id']}"
        edit = form | {"status": "active", "ordering_key": "{not json"}
        refused = client.post(path, data=edit)
        assert refused.status_code == 422
        assert 'id="ordering_key-error">ordering_key: is not valid JSON' in refused.text
        soon = client.post(path, data=form | {"status": "active", "reenable_after": "soon"})
        api_path = f"/v1/webhook-targets/{target['id']}"
        detail = gw.admin.patch(api_path, json={"reenable_after": "soon"}).json()["detail"]
        assert soon.status_code == 422
        assert f'id="reenable_after-error">reenable_after: {escape(detail)}' in soon.text
        after = gw.admin.get(api_path).json()
        assert after["ordering"] is None and after["description"] == ""
        assert after["updated_at"] == target["updated_at"]

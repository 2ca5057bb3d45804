"""The smallest end-to-end path: create an app, post an event, read it back."""

from __future__ import annotations

import harness


def test_event_posted_to_secret_url_is_stored(gateway: harness.Gateway) -> None:
    app_id, token = gateway.create_app("acme")
    response = gateway.post_event(token, {"event_type": "job_completed", "phone": "555"})
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    stored = gateway.admin.get(f"/v1/events/{event_id}").json()
    assert stored["app_id"] == app_id
    assert stored["payload"] == {"event_type": "job_completed", "phone": "555"}

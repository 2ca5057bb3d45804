"""The SSRF guard end to end, with `allow_private_targets = false`: private targets are refused
when created through the API, and a rule-file webhook to one is refused when sending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

from gateway.config import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def guarded(tmp_path: Path) -> Settings:
    return harness.make_settings(tmp_path, delivery={"allow_private_targets": False})


@pytest.fixture
def guarded_gateway(guarded: Settings) -> Iterator[harness.Gateway]:
    with harness.running_gateway(guarded) as running:
        yield running


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "host 127.0.0.1 is a loopback address"),
        ("http://10.0.0.1/hook", "host 10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "host 169.254.169.254 is a cloud metadata"),
        ("http://localhost/hook", "host localhost resolves to"),
        ("http://[::1]:8080/hook", "is a loopback address"),
        ("http://0x7f.1/hook", "is a loopback address"),
    ],
)
def test_private_target_is_refused_at_creation(
    guarded_gateway: harness.Gateway, url: str, reason: str
) -> None:
    response = guarded_gateway.admin.post("/v1/webhook-targets", json={"url": url})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["field"] == "url"
    assert body["detail"].startswith("refused: ")
    assert reason in body["detail"]
    if "localhost" in url:
        assert "loopback" in body["detail"]
    assert guarded_gateway.admin.get("/v1/webhook-targets").json()["data"] == []


def test_patch_to_a_private_url_is_refused(guarded_gateway: harness.Gateway) -> None:
    # A public literal address: the guard judges it without DNS, and nothing is sent here.
    created = guarded_gateway.admin.post(
        "/v1/webhook-targets", json={"url": "https://93.184.215.14/hook"}
    )
    assert created.status_code == 201, created.text
    harness.track_secret(created.json()["secret"])
    target_id = created.json()["id"]
    response = guarded_gateway.admin.patch(
        f"/v1/webhook-targets/{target_id}", json={"url": "http://192.168.1.10/hook"}
    )
    assert response.status_code == 422
    assert "private address" in response.json()["detail"]
    shown = guarded_gateway.admin.get(f"/v1/webhook-targets/{target_id}").json()
    assert shown["url"] == "https://93.184.215.14/hook"


def test_rule_webhook_to_private_address_fails_at_send_time_and_sends_nothing(
    guarded: Settings, sink: harness.Sink
) -> None:
    rules_dir = Path(guarded.rules.dir)
    rules_dir.mkdir(parents=True)
    (rules_dir / "rules.toml").write_text(
        f"""
[[rules]]
id = "to-loopback"

  [[rules.actions]]
  type = "webhook"
  url = "{sink.url("/private")}"
  retry = [0.1, 0.1]

  [[rules.actions]]
  type = "forward"
  url = "http://localhost:{sink.base_url.rsplit(":", 1)[1]}/private"
"""
    )
    with harness.running_gateway(guarded) as gateway:
        _, token = gateway.create_app("acme")
        response = gateway.post_event(token, {"event_type": "x"})
        assert response.status_code == 202
        event_id = response.json()["event_id"]

        def finished() -> list[dict[str, object]] | None:
            rows = gateway.admin.get(f"/v1/events/{event_id}").json()["deliveries"]
            return rows if rows and all(r["status"] == "failed" for r in rows) else None

        rows = harness.wait_until(finished)
        deliveries = [gateway.admin.get(f"/v1/deliveries/{r['id']}").json() for r in rows]
    assert len(deliveries) == 2
    by_type = {d["action_type"]: d for d in deliveries}
    [attempt] = by_type["webhook"]["attempts"]  # a refusal is final: no retries
    assert attempt["status_code"] is None
    assert attempt["error"] == "host 127.0.0.1 is a loopback address"
    [attempt] = by_type["forward"]["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("host localhost resolves to ")
    assert "loopback" in attempt["error"]
    assert sink.requests_to("/private") == []

"""The shipped examples: `examples/rules.d` passes `hookgate rules check`, and a gateway running
a copy of it (URLs pointed at a local sink) behaves as the messaging webhook should."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import orjson
import pytest

from gateway.config import Settings

pytestmark = pytest.mark.e2e

EXAMPLES = harness.REPO / "examples"
RULES = EXAMPLES / "rules.d"
EVENTS = EXAMPLES / "events"
PLACEHOLDER_HOSTS = (
    "https://crm.example.com",
    "https://sms.example.com",
    "https://chat.example.com",
)


def hookgate(*args: str) -> subprocess.CompletedProcess[str]:
    # No HOOKGATE_* settings and no secret env vars: the examples must need none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=harness.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_examples_pass_rules_check() -> None:
    result = hookgate("rules", "check", "examples/rules.d")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "7 rules OK"


def test_examples_use_placeholder_urls_and_no_secrets() -> None:
    text = "".join(path.read_text() for path in sorted(RULES.glob("*.toml")))
    urls = re.findall(r'url = "([^"]+)"', text)
    assert urls
    assert all(url.startswith(PLACEHOLDER_HOSTS) for url in urls), urls
    assert "secret_env" not in text


@pytest.mark.parametrize(
    ("event", "matched"),
    [
        ("message-inbound.json", ["forward-inbound-messages"]),
        ("message-outbound-team.json", ["forward-team-replies"]),
        ("message-outbound-bot.json", []),
        ("message-outbound-ai.json", []),
        ("job-completed.json", ["job-completed-thank-you", "job-completed-review-request"]),
        ("job-reopened.json", []),
        ("customer-updated.json", ["crm-customer-updates"]),
        ("delivery-failed.json", []),  # alerts match only rules of the app `hookgate`
    ],
)
def test_sample_events_match_the_example_rules(event: str, matched: list[str]) -> None:
    result = hookgate(
        *("rules", "test", f"examples/events/{event}"),
        *("--app", "chekkit", "--dir", "examples/rules.d", "--json"),
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["matched_rules"] == matched


def test_the_sample_alert_matches_the_alert_rule_of_the_app_hookgate() -> None:
    result = hookgate(
        *("rules", "test", "examples/events/delivery-failed.json"),
        *("--app", "hookgate", "--dir", "examples/rules.d", "--json"),
    )
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["matched_rules"] == ["alert-delivery-failed"]
    [request] = report["requests"]
    assert request["body"]["text"] == (
        "hookgate gave up on dlv_01M8XTX4M6634ZN6RKHFG1JSEB (rule forward-inbound-messages) "
        "to https://crm.example.com/webhooks/chekkit after 1 attempt(s); queued 23 Nov 16:10 UTC"
    )


def copy_examples(settings: Settings, sink: harness.Sink, *, team_replies: bool = True) -> None:
    """The example rules with their placeholder hosts pointed at `sink`."""
    target = Path(settings.rules.dir)
    shutil.copytree(RULES, target)
    for path in target.glob("*.toml"):
        text = path.read_text()
        for host in PLACEHOLDER_HOSTS:
            text = text.replace(host, sink.base_url)
        start = text.find('id = "forward-team-replies"')
        if not team_replies and start >= 0:
            end = text.find("[[rules]]", start)
            end = len(text) if end < 0 else end
            block = text[start:end]
            assert block.count("enabled = true") == 1
            text = text[:start] + block.replace("enabled = true", "enabled = false") + text[end:]
        path.write_text(text)


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def with_event_type(raw: bytes, event_type: str) -> dict[str, object]:
    return {**orjson.loads(raw), "eventType": event_type}


def test_example_rules_forward_inbound_and_team_replies_but_not_bot_replies(
    settings: Settings, sink: harness.Sink
) -> None:
    copy_examples(settings, sink)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        posted = {}
        for name in (
            "message-outbound-bot.json",
            "message-outbound-ai.json",
            "message-inbound.json",
            "message-outbound-team.json",
            "job-completed.json",
        ):
            response = gateway.post_event(token, sample(name))
            assert response.status_code == 202, response.text
            posted[name] = response.json()["event_id"]

        forwarded = sink.wait_for(2, "/webhooks/chekkit", timeout=2.0)
        [thanks] = sink.wait_for(1, "/hooks/send", timeout=2.0)
        for name in ("message-outbound-bot.json", "message-outbound-ai.json"):
            stored = gateway.admin.get(f"/v1/events/{posted[name]}").json()
            assert stored["matched_rules"] == []
            assert stored["deliveries"] == []  # nothing was, or ever will be, sent for it

    bodies = sorted((r.json() for r in forwarded), key=lambda b: str(b["type"]))
    assert bodies == [
        with_event_type(sample("message-inbound.json"), "message.inbound"),
        with_event_type(sample("message-outbound-team.json"), "message.outbound"),
    ]
    assert all(r.method == "POST" for r in forwarded)
    assert thanks.json() == {
        "to": "+14155552671",
        "text": "Thanks Ada! Job job_4411 is complete.",
        "job_id": "job_4411",
    }
    assert len(sink.received) == 3


def test_team_replies_stay_put_when_their_rule_is_disabled(
    settings: Settings, sink: harness.Sink
) -> None:
    copy_examples(settings, sink, team_replies=False)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        reply = gateway.post_event(token, sample("message-outbound-team.json"))
        inbound = gateway.post_event(token, sample("message-inbound.json"))
        assert reply.status_code == inbound.status_code == 202
        [received] = sink.wait_for(1, "/webhooks/chekkit", timeout=2.0)
        stored = gateway.admin.get(f"/v1/events/{reply.json()['event_id']}").json()
        rules = gateway.admin.get("/v1/rules").json()
    assert received.json()["type"] == "message.inbound"
    assert stored["matched_rules"] == []
    assert stored["deliveries"] == []
    assert "forward-team-replies" in orjson.dumps(rules).decode()


def test_the_review_request_waits_two_hours_and_a_reopened_job_cancels_it(
    settings: Settings, sink: harness.Sink
) -> None:
    copy_examples(settings, sink)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        completed = gateway.post_event(token, sample("job-completed.json"))
        assert completed.status_code == 202, completed.text
        sink.wait_for(1, "/hooks/send", timeout=2.0)  # the thank-you, at once
        params = {"rule_id": "job-completed-review-request"}
        [review] = gateway.admin.get("/v1/deliveries", params=params).json()["data"]
        reopened = gateway.post_event(token, sample("job-reopened.json"))
        assert reopened.status_code == 202, reopened.text
        after = gateway.admin.get(f"/v1/deliveries/{review['id']}").json()
    assert review["status"] == "scheduled"
    assert review["next_attempt_at"] is not None
    assert after["status"] == "cancelled"
    assert len(sink.requests_to("/hooks/send")) == 1


def test_messages_of_other_apps_are_not_forwarded(settings: Settings, sink: harness.Sink) -> None:
    copy_examples(settings, sink)
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("another-app")
        response = gateway.post_event(token, sample("message-inbound.json"))
        stored = gateway.admin.get(f"/v1/events/{response.json()['event_id']}").json()
    assert stored["matched_rules"] == []


def test_a_forward_the_crm_refuses_is_posted_to_the_ops_chat(
    settings: Settings, sink: harness.Sink
) -> None:
    """The shipped alert rule end to end: the CRM answers 500 to a best-effort forward, the
    delivery fails for good, and its `hookgate.delivery.failed` event reaches the chat."""
    copy_examples(settings, sink)
    sink.statuses["/webhooks/chekkit"] = 500
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("chekkit")
        response = gateway.post_event(token, sample("message-inbound.json"))
        assert response.status_code == 202, response.text
        [alert] = sink.wait_for(1, "/hooks/ops", timeout=10.0)
        event = gateway.admin.get(f"/v1/events/{response.json()['event_id']}").json()
    [failed] = event["deliveries"]
    assert failed["status"] == "failed"
    body = alert.json()
    assert body["delivery_id"] == failed["id"]
    assert body["text"].startswith(
        f"hookgate gave up on {failed['id']} (rule forward-inbound-messages) to "
        f"{sink.base_url}/webhooks/chekkit after 1 attempt(s); queued "
    )
    assert len(sink.requests_to("/webhooks/chekkit")) == 1

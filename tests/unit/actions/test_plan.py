"""`plan_deliveries`: one delivery per (match, action), due now; a body template that fails
on the event becomes a failed delivery carrying the error as its attempt."""

from __future__ import annotations

from pathlib import Path

from actions import Delivery, needs_event
from actions.plan import plan_deliveries
from actions.registry import ACTION_TYPES
from rules import Match, load_file

RULE = """
[[rules]]
id = "r"
  [[rules.actions]]
  type = "webhook"
  url = "https://example.com/ok"
  body = {{ v = {{ var = "n" }} }}
  [[rules.actions]]
  type = "webhook"
  url = "https://example.com/broken"
  body = {{ v = {{ "/" = [1, {{ var = "zero" }}] }} }}
"""


def test_a_failing_template_is_a_failed_delivery_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text(RULE.format())
    result = load_file(tmp_path / "r.toml", action_types=tuple(ACTION_TYPES))
    assert not result.errors
    ok, broken = plan_deliveries([Match(result.rules[0])], "evt_1", {"n": 7, "zero": 0}, 100.0)

    assert (ok.status, ok.body, ok.next_attempt_at, ok.attempt_count) == (
        "pending",
        b'{"v":7}',
        100.0,
        0,
    )
    assert ok.attempts == ()
    assert (broken.status, broken.body, broken.next_attempt_at, broken.attempt_count) == (
        "failed",
        None,
        None,
        1,
    )
    (attempt,) = broken.attempts
    assert (attempt.at, attempt.status_code, attempt.latency_ms) == (100.0, None, 0.0)
    assert attempt.error is not None and attempt.error.startswith("template error: ")
    # everything else is snapshotted alike, and each delivery has its own id
    assert (broken.event_id, broken.rule_id, broken.url, broken.created_at) == (
        "evt_1",
        "r",
        "https://example.com/broken",
        100.0,
    )
    assert broken.retry == ok.retry and broken.id != ok.id


def test_only_action_types_that_read_the_event_ask_for_it() -> None:
    rendered = Delivery(id="d1", event_id="e", action_type="webhook", url="u", body=b"{}")
    envelope = Delivery(id="d2", event_id="e", action_type="webhook", url="u")
    forward = Delivery(id="d3", event_id="e", action_type="forward", url="u", body=b"{}")
    unknown = Delivery(id="d4", event_id="e", action_type="sms", url="u")
    assert not needs_event(rendered)
    assert needs_event(envelope)
    assert needs_event(forward)
    assert not needs_event(unknown)


ORDERED = """
[[rules]]
id = "crm"
  [[rules.actions]]
  type = "webhook"
  url = "https://example.com/unordered"
  [[rules.actions]]
  type = "webhook"
  url = "https://example.com/per-customer"
  ordering = "fifo"
  ordering_key = { var = "customerId" }
  [[rules.actions]]
  type = "webhook"
  url = "https://example.com/all-in-order"
  ordering = "fifo"
"""


def _ordered_rule(tmp_path: Path) -> Match:
    (tmp_path / "o.toml").write_text(ORDERED)
    result = load_file(tmp_path / "o.toml", action_types=tuple(ACTION_TYPES))
    assert not result.errors
    return Match(result.rules[0])


def test_ordering_keys_are_scoped_to_the_rule_action_and_carry_the_value(tmp_path: Path) -> None:
    match = _ordered_rule(tmp_path)
    unordered, per_customer, whole = plan_deliveries([match], "evt_1", {"customerId": "c1"}, 1.0)
    assert unordered.ordering_key is None
    assert per_customer.ordering_key == 'crm#1|"c1"'
    assert whole.ordering_key == "crm#2"


def test_ordering_key_values_keep_their_json_type_and_missing_is_null(tmp_path: Path) -> None:
    match = _ordered_rule(tmp_path)

    def key(payload: object) -> str | None:
        return plan_deliveries([match], "evt_1", payload, 1.0)[1].ordering_key

    assert key({"customerId": 42}) == "crm#1|42"
    assert key({"customerId": "42"}) == 'crm#1|"42"'
    assert key({"customerId": {"b": 1, "a": 2}}) == 'crm#1|{"a":2,"b":1}'
    assert key({}) == "crm#1|null"
    assert key({"customerId": None}) == "crm#1|null"


def test_a_long_ordering_key_is_kept_as_its_hash(tmp_path: Path) -> None:
    match = _ordered_rule(tmp_path)
    long_value = "x" * 500
    first = plan_deliveries([match], "evt_1", {"customerId": long_value}, 1.0)[1].ordering_key
    again = plan_deliveries([match], "evt_2", {"customerId": long_value}, 2.0)[1].ordering_key
    other = plan_deliveries([match], "evt_3", {"customerId": long_value + "y"}, 3.0)[1]
    assert first is not None and first.startswith("crm#1|sha256:") and len(first) < 100
    assert first == again and other.ordering_key != first

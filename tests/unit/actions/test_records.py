"""Records built on the ingest hot path (`hot_record`): plain slotted dataclasses at run
time, with the value semantics of the frozen ones they replace."""

from __future__ import annotations

import dataclasses

from actions.model import Delivery
from gateway.models import Event


def delivery(**changes: object) -> Delivery:
    base = Delivery(id="dlv_1", event_id="evt_1", action_type="webhook", url="https://x/y")
    return dataclasses.replace(base, **changes)


def test_equal_records_hash_alike_and_deduplicate_in_sets() -> None:
    assert delivery() == delivery()
    assert hash(delivery()) == hash(delivery())
    assert len({delivery(), delivery(), delivery(url="https://x/z")}) == 2


def test_replace_makes_a_new_record_and_leaves_the_old_one_alone() -> None:
    first = delivery()
    second = dataclasses.replace(first, status="failed", attempt_count=1)
    assert (first.status, first.attempt_count) == ("pending", 0)
    assert (second.status, second.attempt_count, second.id) == ("failed", 1, "dlv_1")


def test_records_have_slots_and_no_instance_dict() -> None:
    event = Event(id="evt_1", app_id="app_1", event_type=None, received_at=1.0, payload=b"{}")
    assert not hasattr(event, "__dict__") and not hasattr(delivery(), "__dict__")
    assert event.headers == {} and event.matched_rules == ()

"""The pipe protocol: what the server writes, a worker reads back unchanged."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from actions import Attempt, Delivery, EventInfo, TargetInfo
from gateway.delivery import pipe as wire


def test_every_byte_value_survives_the_pipe() -> None:
    body = bytes(range(256))
    (text,) = wire.loads(wire.dumps([body]))
    assert text.encode("latin-1") == body


def test_a_message_is_one_line() -> None:
    line = wire.dumps([1, "claim", {"text": "a\nb"}])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1


def test_an_unknown_type_is_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        wire.dumps([object()])


def test_a_delivery_round_trips_with_its_attempts() -> None:
    delivery = Delivery(
        id="dlv_1",
        event_id="evt_1",
        action_type="webhook",
        url="https://crm.example/hook",
        rule_id="forward",
        body=b'{"a": \xff}',
        retry=(1.0, 5.0),
        headers=(("X-Api-Key", "k"),),
        created_at=10.0,
        next_attempt_at=11.0,
        attempt_count=1,
        attempts=(
            Attempt(
                at=10.5, status_code=500, latency_ms=3.0, error="HTTP 500", response_excerpt="no"
            ),
        ),
    )
    data = wire.loads(wire.dumps([dataclasses.asdict(delivery)]))[0]
    assert wire.delivery_from(data) == delivery


def test_a_delivery_without_body_keeps_none() -> None:
    delivery = Delivery(id="dlv_2", event_id="evt_1", action_type="webhook", url="http://x/")
    data = wire.loads(wire.dumps([dataclasses.asdict(delivery)]))[0]
    assert wire.delivery_from(data).body is None


def test_event_and_target_round_trip_and_none_stays_none() -> None:
    event = EventInfo("evt_1", "job.completed", "crm", 12.5, b'{"x":1}')
    data = wire.loads(wire.dumps([dataclasses.asdict(event)]))[0]
    assert wire.event_from(data) == event
    assert wire.event_from(None) is None
    assert wire.target_from(None) is None
    target = TargetInfo(secret="whsec_x", active=False, disable_after=3)
    data = wire.loads(wire.dumps([dataclasses.asdict(target)]))[0]
    assert wire.target_from(data) == target


async def test_messages_sent_in_one_loop_iteration_go_out_in_one_write() -> None:
    writes: list[bytes] = []
    out = wire.LineBuffer(writes.append)
    out.send([0, "wake"])
    out.send([1, True, None])
    out.send([2, True, [1, 2]])
    assert writes == []  # nothing written until the loop turns
    await asyncio.sleep(0)
    assert len(writes) == 1
    assert [wire.loads(line) for line in writes[0].splitlines()] == [
        [0, "wake"],
        [1, True, None],
        [2, True, [1, 2]],
    ]
    out.send([3, True, None])
    await asyncio.sleep(0)
    assert len(writes) == 2


async def test_flush_with_nothing_pending_writes_nothing() -> None:
    writes: list[bytes] = []
    out = wire.LineBuffer(writes.append)
    out.flush()
    assert writes == []

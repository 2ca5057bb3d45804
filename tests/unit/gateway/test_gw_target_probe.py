"""A disabled target's probe schedule: `reenable_after` as operators write it, the doubling
wait after a failed probe and its cap, and what the target record shows."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import Settings
from gateway.errors import InvalidInput
from gateway.models import (
    PROBE_INTERVAL_MAX,
    REENABLE_AFTER_DEFAULT,
    WebhookTarget,
    next_probe_interval,
)
from gateway.records.shapes import target_json
from gateway.records.targets import update_target
from rules import Logic

AT = 1_795_428_000.0  # 2026-11-23T10:00:00Z
TARGET = WebhookTarget(id="wht_1", url="https://crm.example/hook", secret="whsec_x", created_at=AT)


async def _patched(value: object) -> WebhookTarget:
    return await update_target(TARGET, {"reenable_after": value}, Settings(), Logic())


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10m", 600.0), ("90s", 90.0), ("2s", 2.0), (30, 30.0), ("1.5h", 5400.0), ("6h", 21600.0)],
)
async def test_reenable_after_takes_durations_and_seconds(value: object, seconds: float) -> None:
    assert (await _patched(value)).reenable_after == seconds


@pytest.mark.parametrize("value", ["soon", "10 minutes", "0s", 0, -1, "7h", True, [], "1d"])
async def test_reenable_after_refuses_what_is_not_a_wait_of_1s_to_6h(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        await _patched(value)
    assert refused.value.field == "reenable_after"
    assert refused.value.message


async def test_reenable_after_defaults_to_ten_minutes() -> None:
    assert TARGET.reenable_after == REENABLE_AFTER_DEFAULT == 600.0
    assert (await _patched(None)).reenable_after == 600.0


def test_the_wait_doubles_after_each_failed_probe_up_to_six_hours() -> None:
    waits = [600.0]
    for _ in range(8):
        waits.append(next_probe_interval(waits[-1]))
    assert waits == [600.0, 1200.0, 2400.0, 4800.0, 9600.0, 19200.0, 21600.0, 21600.0, 21600.0]
    assert PROBE_INTERVAL_MAX == 6 * 3600.0
    assert next_probe_interval(2.0) == 4.0


def test_the_record_shows_why_and_when_a_disabled_target_is_probed() -> None:
    active = target_json(TARGET)
    assert (active["status"], active["disabled_at"], active["disabled_by"]) == (
        "active",
        None,
        None,
    )
    assert (active["next_probe_at"], active["probe_interval_seconds"]) == (None, None)
    assert active["reenable_after"] == 600.0

    after_failures = target_json(
        dataclasses.replace(
            TARGET,
            status="disabled",
            disabled_at=AT,
            next_probe_at=AT + 1200,
            probe_interval=1200.0,
            probe_delivery_id="dlv_1",
        )
    )
    assert after_failures["disabled_by"] == "failures"
    assert after_failures["disabled_at"] == "2026-11-23T10:00:00.000Z"
    assert after_failures["next_probe_at"] == "2026-11-23T10:20:00.000Z"
    assert after_failures["probe_interval_seconds"] == 1200.0
    assert after_failures["probe_delivery_id"] == "dlv_1"

    by_hand = target_json(dataclasses.replace(TARGET, status="disabled", disabled_at=AT))
    assert (by_hand["disabled_by"], by_hand["next_probe_at"]) == ("api", None)

"""The console's target form (`gateway.http.console.target_form`): what it shows for a
target is what it saves back unchanged, and text is passed to the API's validation as the
JSON type the API would receive."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from starlette.datastructures import FormData

from gateway.config import load_settings
from gateway.errors import InvalidInput
from gateway.http.console.target_form import duration_text, target_body, target_values
from gateway.models import WebhookTarget
from gateway.records.targets import update_target
from rules import Logic
from rules.durations import parse_duration

SETTINGS = load_settings(env={}, delivery={"allow_private_targets": False})
LOGIC = Logic()
TARGET = WebhookTarget(
    id="wht_1",
    url="https://93.184.216.34/hook",  # an IP literal: judged without DNS
    secret="whsec_" + "A" * 43 + "=",
    events=("order.created", "order.paid"),
    filter={">": [{"var": "total"}, 10]},
    retry=(5.0, 30.5),
    disable_after=None,
    reenable_after=5400.0,
    description="orders",
    rate=2.5,
    burst=4,
    ordering="fifo",
    ordering_key={"var": "customerId"},
)


async def _saved(target: WebhookTarget, fields: dict[str, str]) -> WebhookTarget:
    body = target_body(FormData(fields), editing=True)
    return await update_target(target, body, SETTINGS, LOGIC)


@pytest.mark.parametrize(
    "target",
    [
        TARGET,
        WebhookTarget(id="wht_2", url="https://93.184.216.34/", secret=TARGET.secret),
        dataclasses.replace(TARGET, retry="none", disable_after=7, ordering_key=None),
    ],
)
async def test_saving_the_form_as_shown_changes_no_field(target: WebhookTarget) -> None:
    saved = await _saved(target, target_values(target))
    assert dataclasses.replace(saved, updated_at=target.updated_at) == target


@pytest.mark.parametrize("seconds", [1.0, 59.0, 90.0, 600.0, 5400.0, 7200.0, 1.5, 21600.0])
def test_duration_text_reads_back_as_the_same_seconds(seconds: float) -> None:
    assert parse_duration(duration_text(seconds)) == seconds


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("disable_after", "soon", "must be a positive integer or null (never)"),
        ("disable_after", "0", "must be a positive integer or null (never)"),
        ("retry", "5, later", "unknown retry policy '5, later'"),
        ("retry", "-1", "retry delay #1 must be a finite number >= 0"),
        ("reenable_after", "0.5s", "must be between 1s and 6h"),
        ("rate", "fast", "must be a number of deliveries per second > 0"),
        ("burst", "1.5", "must be an integer >= 1"),
        ("ordering", "lifo", 'must be "fifo"'),
        ("ordering_key", '"customerId"', "must be a JSON-Logic expression"),
    ],
)
async def test_a_bad_value_gets_the_apis_message(field: str, text: str, message: str) -> None:
    fields: dict[str, Any] = target_values(TARGET) | {field: text}
    with pytest.raises(InvalidInput) as refused:
        await _saved(TARGET, fields)
    assert refused.value.field == field and message in refused.value.message

"""The row shapes both SQL stores share (`gateway.store.sql_rows`)."""

from __future__ import annotations

from gateway.models import WebhookTarget
from gateway.store import sql_rows
from gateway.store.sqlite import writer


def test_the_writer_process_keeps_the_shared_target_columns() -> None:
    # The writer imports nothing of the package (it starts by path), so it has its own copy.
    assert writer.TARGET_COLS == sql_rows.TARGET_COLS
    assert writer.TARGET_MARKS == sql_rows.TARGET_MARKS == len(sql_rows.TARGET_COLS.split(", "))


def test_a_target_survives_its_row_with_every_field_set() -> None:
    target = WebhookTarget(
        id="wht_1",
        url="https://crm.example/hook",
        secret="whsec_x",
        events=("job.completed",),
        filter={"==": [{"var": "a"}, 1]},
        status="disabled",
        retry=(1.0, 5.0),
        disable_after=3,
        description="crm",
        created_at=1.0,
        updated_at=2.0,
        consecutive_failures=3,
        rate=5.0,
        burst=10,
        reenable_after=120.0,
        disabled_at=3.0,
        next_probe_at=123.0,
        probe_interval=120.0,
        probe_delivery_id="dlv_1",
        ordering="fifo",
        ordering_key={"var": "customerId"},
    )
    row = sql_rows.target_row(target)
    assert len(row) == sql_rows.TARGET_MARKS
    assert sql_rows.target(row) == target

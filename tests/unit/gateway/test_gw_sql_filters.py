"""The list filters both SQL stores render: only the given ones, numbered in order."""

from __future__ import annotations

from actions.ids import sortable_id
from gateway.store import sql_filters
from gateway.store.base import DeliveryFilter


def test_only_given_filters_are_rendered_and_numbered_in_order() -> None:
    clauses = sql_filters.deliveries(DeliveryFilter(status="failed", rule_id="r1"), "dlv_9")
    sql, values = sql_filters.where(clauses, lambda n: f"${n}")
    assert sql == "WHERE status = $1 AND rule_id = $2 AND id < $3"
    assert values == ["failed", "r1", "dlv_9"]
    assert sql_filters.where(clauses, lambda _: "?")[0] == (
        "WHERE status = ? AND rule_id = ? AND id < ?"
    )


def test_no_filter_is_no_where_clause() -> None:
    assert sql_filters.where(sql_filters.events(None, None, None, None), lambda _: "?") == (
        "",
        [],
    )


def test_since_also_bounds_the_id_a_millisecond_early() -> None:
    since = 1_700_000_000.5
    sql, values = sql_filters.where(sql_filters.events("app_1", None, since, None), str)
    assert sql == "WHERE app_id = 1 AND received_at >= 2 AND id >= 3"
    floor = values[2]
    assert sortable_id("evt_", since) >= floor  # an event received at `since` is listed
    assert sortable_id("evt_", since - 0.0005) >= floor  # and one of the same millisecond
    assert sortable_id("evt_", since - 0.002) < floor  # the walk stops before older ones

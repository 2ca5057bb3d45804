"""The WHERE clauses of the two SQL stores' list queries (SQLite, PostgreSQL): one list of
filters per query, so a filter added to the API lands in both backends, each rendering it
with its own placeholders (`?` or `$n`).

`since` also bounds the id: ids begin with their millisecond, so the walk down an
(x, id) index stops at the first row older than `since` (and PostgreSQL does not read the
event partitions before it at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actions.ids import id_floor
from gateway.store.base import DeliveryFilter

Clause = tuple[str, Any]  # ("column operator", value); None: this filter is not given


def events(
    app_id: str | None, event_type: str | None, since: float | None, cursor: str | None
) -> list[Clause]:
    return [
        ("app_id =", app_id),
        ("event_type =", event_type),
        ("received_at >=", since),
        ("id >=", _id_bound("evt_", since)),
        ("id <", cursor),
    ]


def deliveries(flt: DeliveryFilter, cursor: str | None) -> list[Clause]:
    return [
        ("status =", flt.status),
        ("target_id =", flt.target_id),
        ("rule_id =", flt.rule_id),
        ("event_id =", flt.event_id),
        ("created_at >=", flt.since),
        ("id >=", _id_bound("dlv_", flt.since)),
        ("id <", cursor),
    ]


def failed_since(since: float, target_id: str | None) -> list[Clause]:
    return [
        ("status =", "failed"),
        ("created_at >=", since),
        ("id >=", _id_bound("dlv_", since)),
        ("target_id =", target_id),
    ]


def where(clauses: Sequence[Clause], mark: Callable[[int], str]) -> tuple[str, list[Any]]:
    """`WHERE ...` over the given filters (empty when none is) and their values in order;
    `mark(n)` is the placeholder of the n-th value (from 1)."""
    used = [(clause, value) for clause, value in clauses if value is not None]
    if not used:
        return "", []
    sql = " AND ".join(f"{clause} {mark(n)}" for n, (clause, _) in enumerate(used, start=1))
    return "WHERE " + sql, [value for _, value in used]


def _id_bound(prefix: str, since: float | None) -> str | None:
    # a millisecond early: `since` may fall inside the millisecond an id was made in
    return None if since is None else id_floor(prefix, since - 0.001)

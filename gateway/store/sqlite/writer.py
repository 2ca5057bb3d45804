"""The SQLite writer process: the one connection that writes, and the schema it keeps.

`SqliteStore` runs this file as a child process (by path, so that it imports nothing but
the standard library and orjson, and starts in a few tens of milliseconds) and sends it
every write over its stdin; reads stay in the server. A write costs the server only the
encoding of its rows: the binding, the B-tree work and the fsync happen here, on another
core and under another GIL, where nothing competes with the HTTP event loop.

Group commit falls out of the pipe: whatever requests are waiting when the previous
commit ends are read in one go and applied in one transaction, and each is answered only
after that transaction commits. A batch costs a handful of statements whatever its size
(multi-row inserts, one UPDATE ... FROM VALUES for attempts). If anything in it fails,
it is rolled back and applied again op by op, each in a savepoint, so a bad write fails
only its own caller.

Protocol (one JSON array per line): request `[id, command, *args]`, answer
`[id, ok, result or message]`; the process says `[0, "ready"]` once the schema exists.
Bytes (event payloads, delivery bodies) travel as latin-1 text.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

# Beside this file, read by path: `importlib.resources.files("gateway.store.sqlite")` would
# import the gateway package first: 1.0-1.4 s instead of 0.06-0.2 s to start this process
# (`time python -c ...`, three runs each on a loaded 2-core machine), which is how long
# ingest answers 503 after the writer is restarted.
SCHEMA = (Path(__file__).parent / "schema.sql").read_text("utf-8")

APP_COLS = (
    "id, name, token_hash, enabled, rate, burst, schema, signing_secret, created_at, "
    "updated_at, previous_token_hash, previous_token_expires_at, signature_scheme"
)
APP_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in APP_COLS.split(", ")[1:])
EVENT_COLS = "id, app_id, event_type, received_at, payload, headers, matched_rules, idem_key"
# The target columns of `gateway.store.sql_rows` (this process imports nothing of the
# package; a unit test holds the two equal).
TARGET_COLS = (
    "id, url, secret, events, filter, status, retry, disable_after, description, created_at, "
    "updated_at, consecutive_failures, rate, burst, reenable_after, disabled_at, next_probe_at, "
    "probe_interval, probe_delivery_id, ordering, ordering_key"
)
TARGET_MARKS = len(TARGET_COLS.split(", "))
DELIVERY_COLS = (
    "id, event_id, rule_id, target_id, action_type, url, status, body, retry, secret_env, "
    "timeout_seconds, disable_after, created_at, next_attempt_at, attempt_count, headers, "
    "rate_limit, ordering_key"
)
# The delivery columns as JSON values (bodies are UTF-8 JSON, so text is lossless).
DELIVERY_JSON_COLS = (
    "id, event_id, rule_id, target_id, action_type, url, status, CAST(body AS TEXT), "
    "json(retry), secret_env, timeout_seconds, disable_after, created_at, next_attempt_at, "
    "attempt_count, json(headers), json(rate_limit), ordering_key"
)
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_EVENT_KEYED = INSERT_EVENT + " ON CONFLICT DO NOTHING"
INSERT_EVENT_HEAD = f"INSERT INTO events ({EVENT_COLS}) VALUES "
INSERT_DELIVERY_HEAD = (
    f"INSERT INTO deliveries ({DELIVERY_COLS}, leased_until, lease_token, host, ordering_seq)"
    " VALUES "
)
DELIVERY_ROW_COLS = 22
DELIVERY_STATUS, DELIVERY_KEY, DELIVERY_SEQ = 6, 17, 21  # columns of a delivery row
# A claimable row: unordered, or no earlier pending row of its key (`deliveries_ordering`).
HEAD_OF_KEY = (
    "(d.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e"
    " WHERE e.ordering_key = d.ordering_key AND e.status = 'pending'"
    " AND e.ordering_seq < d.ordering_seq))"
)
INSERT_ATTEMPT = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
EVENT_PAYLOAD = 4  # column of the event row that is bytes
DELIVERY_BODY = 7  # column of the delivery row that is bytes
READ_CHUNK = 1 << 20
CACHE_KIB = 16 * 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # after a checkpoint the WAL file is cut back to this


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=10000")
    # Checkpoints run here, inside the commit that fills 1000 pages of WAL: in this process
    # they cost the server nothing, and they keep the WAL from growing without bound (a
    # checkpointer elsewhere cannot reset the WAL while this connection keeps appending).
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    # A multi-row INSERT inside a transaction keeps a statement journal; on disk that is a
    # temp file opened, unlinked and closed per transaction (five system calls each).
    conn.execute("PRAGMA temp_store=MEMORY")
    # The pages of the index tails and of recent deliveries stay hot; a larger cache than
    # the 2 MB default spares a pread per page the batch touches again.
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    _add_lease_columns(conn)
    conn.executescript(SCHEMA)
    _add_missing_columns(conn)
    return conn


# Columns added after a release: (table, column, definition). A database created before
# them gets each one by ALTER TABLE, whose DEFAULT fills the existing rows.
ADDED_COLUMNS = (
    ("apps", "signature_scheme", "TEXT NOT NULL DEFAULT 'standard-webhooks'"),
    # What an attempt sent and received (JSON; NULL on attempts from before them).
    ("attempts", "request", "TEXT"),
    ("attempts", "response_headers", "TEXT"),
    # When the attempt's rate limit granted its slot (NULL: no rate limit, or older).
    ("attempts", "rate_slot_at", "REAL"),
    # Delivery rate limits: a rule action's [key, rate, burst] (JSON), a target's own.
    ("deliveries", "rate_limit", "TEXT"),
    ("targets", "rate", "REAL"),
    ("targets", "burst", "INTEGER"),
    # Held, not dropped: a target's probe schedule (docs/design.md).
    ("targets", "reenable_after", "REAL NOT NULL DEFAULT 600"),
    ("targets", "disabled_at", "REAL"),
    ("targets", "next_probe_at", "REAL"),
    ("targets", "probe_interval", "REAL"),
    ("targets", "probe_delivery_id", "TEXT"),
    # FIFO ordering of a target's deliveries (NULL: unordered; the key as JSON-Logic JSON)
    ("targets", "ordering", "TEXT"),
    ("targets", "ordering_key", "TEXT"),
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, definition in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _add_lease_columns(conn: sqlite3.Connection) -> None:
    """A database from before lease tokens, bulkheads and ordering gains their columns."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
    if not columns:
        return
    for name, kind in (
        ("lease_token", "TEXT"),
        ("host", "TEXT"),
        ("ordering_key", "TEXT"),
        ("ordering_seq", "INTEGER"),
    ):
        if name not in columns:
            conn.execute(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


def _event_row(row: list[Any]) -> list[Any]:
    row[EVENT_PAYLOAD] = _bytes(row[EVENT_PAYLOAD])
    return row


def _delivery_rows(rows: list[list[Any]]) -> list[list[Any]]:
    for row in rows:
        row[DELIVERY_BODY] = _bytes(row[DELIVERY_BODY])
    return rows


def number_ordered(conn: sqlite3.Connection, rows: Sequence[list[Any]]) -> None:
    """Give each pending ordered row its place in accept order (`ordering_seq`), in the
    order the rows are inserted: this process is the only writer, so insert order is
    commit order. One statement per batch that has ordered rows, none otherwise."""
    ordered = [
        r for r in rows if r[DELIVERY_KEY] is not None and r[DELIVERY_STATUS] in ("pending", "held")
    ]
    if not ordered:
        return
    last = conn.execute(
        "UPDATE meta SET value = value + ? WHERE key = 'ordering_seq' RETURNING value",
        (len(ordered),),
    ).fetchone()[0]
    for place, row in enumerate(ordered, start=last - len(ordered) + 1):
        row[DELIVERY_SEQ] = place


def _bump(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (key,))


@functools.cache
def _values_sql(head: str, columns: int, rows: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return head + ", ".join([row] * rows)


def insert_rows(
    conn: sqlite3.Connection, head: str, columns: int, rows: Sequence[Sequence[Any]]
) -> None:
    """Insert rows with one multi-row INSERT per chunk (one statement, not one per row)."""
    per_statement = MAX_VARIABLES // columns
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        conn.execute(_values_sql(head, columns, len(chunk)), list(itertools.chain(*chunk)))


# commands: each takes the connection and the request's arguments (rows already decoded)


def add_events(
    conn: sqlite3.Connection,
    ops: list[tuple[list[Any], list[list[Any]], list[list[Any]]]],
    ttl: float,
) -> list[list[Any]]:
    """Insert events with their deliveries; answer `[event_id, duplicate]` per event.

    A repeated idempotency key inserts nothing and answers the original id, unless the
    original is older than `ttl` (its key expired: it passes to the new event even before
    the pruner has cleared it).
    """
    answers: list[list[Any]] = []
    plain = [op for op in ops if op[0][7] is None]
    insert_rows(conn, INSERT_EVENT_HEAD, 8, [op[0] for op in plain])
    inserted = list(plain)
    for event, deliveries, attempts in ops:
        event_id, app_id, key = event[0], event[1], event[7]
        if key is None:
            answers.append([event_id, False])
            continue
        if conn.execute(INSERT_EVENT_KEYED, event).rowcount == 1:
            answers.append([event_id, False])
            inserted.append((event, deliveries, attempts))
            continue
        row = conn.execute(
            "SELECT id, received_at FROM events WHERE app_id = ? AND idem_key = ?", (app_id, key)
        ).fetchone()
        if row is not None and row[1] < event[3] - ttl:
            conn.execute("UPDATE events SET idem_key = NULL WHERE id = ?", (row[0],))
            conn.execute(INSERT_EVENT, event)
            answers.append([event_id, False])
            inserted.append((event, deliveries, attempts))
            continue
        answers.append([row[0] if row else event_id, True])
    delivery_rows = [row for _, deliveries, _ in inserted for row in deliveries]
    if delivery_rows:
        number_ordered(conn, delivery_rows)
        insert_rows(conn, INSERT_DELIVERY_HEAD, DELIVERY_ROW_COLS, delivery_rows)
        attempt_rows = [row for _, _, attempts in inserted for row in attempts]
        if attempt_rows:
            conn.executemany(INSERT_ATTEMPT, attempt_rows)
    return answers


def finish_attempts(conn: sqlite3.Connection, rows: list[list[Any]]) -> list[bool]:
    """Record attempts and move their deliveries on: three statements for the whole batch.

    A row is (delivery_id, status, next_attempt_at, at, status_code, latency_ms, error,
    response_excerpt, retry_after, request, response_headers, rate_slot_at, lease_token).
    Only rows still
    pending under that lease token are written (the fence); the answer says, per row,
    whether it was.
    """
    if len({row[0] for row in rows}) != len(rows):
        raise ValueError("one delivery finished twice in a batch")  # careful path: in order
    held = conn.execute(
        "SELECT json_group_array(d.id) FROM deliveries AS d"
        " JOIN json_each(?) AS v ON d.id = json_extract(v.value, '$[0]')"
        " AND d.lease_token = json_extract(v.value, '$[1]')"
        " WHERE d.status = 'pending'",
        (orjson.dumps([[row[0], row[12]] for row in rows]).decode(),),
    ).fetchone()[0]
    ok = set(orjson.loads(held))
    answers = [row[0] in ok for row in rows]
    rows = [row[:12] for row in rows if row[0] in ok]
    if not rows:
        return answers
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    params = list(itertools.chain(*rows))
    conn.execute(
        "UPDATE deliveries SET status = v.column2, next_attempt_at = v.column3,"
        " leased_until = NULL, lease_token = NULL, attempt_count = attempt_count + 1"
        f" FROM (VALUES {values}) AS v WHERE deliveries.id = v.column1",
        params,
    )
    conn.execute(
        "INSERT OR REPLACE INTO attempts SELECT v.column1, d.attempt_count, v.column4,"
        " v.column5, v.column6, v.column7, v.column8, v.column9, v.column10, v.column11,"
        " v.column12"
        f" FROM (VALUES {values}) AS v JOIN deliveries AS d ON d.id = v.column1",
        params,
    )
    return answers


def create_app(conn: sqlite3.Connection, row: list[Any]) -> None:
    conn.execute(f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(13)})", row)
    _bump(conn, "apps_version")


def save_app(conn: sqlite3.Connection, row: list[Any]) -> None:
    # An upsert on the id, not REPLACE: REPLACE would resolve a clash on the unique name
    # by deleting the other app; this raises instead.
    conn.execute(
        f"INSERT INTO apps ({APP_COLS}) VALUES ({_marks(13)}) ON CONFLICT (id) DO UPDATE"
        f" SET {APP_UPDATE}",
        row,
    )
    _bump(conn, "apps_version")


def delete_app(conn: sqlite3.Connection, app_id: str) -> bool:
    found = conn.execute("DELETE FROM apps WHERE id = ?", (app_id,)).rowcount > 0
    if found:
        _bump(conn, "apps_version")
    return found


def save_target(conn: sqlite3.Connection, row: list[Any]) -> None:
    conn.execute(f"REPLACE INTO targets ({TARGET_COLS}) VALUES ({_marks(TARGET_MARKS)})", row)
    _bump(conn, "targets_version")


def delete_target(conn: sqlite3.Connection, target_id: str) -> bool:
    found = conn.execute("DELETE FROM targets WHERE id = ?", (target_id,)).rowcount > 0
    if found:
        _bump(conn, "targets_version")
        conn.execute(
            "UPDATE deliveries SET status = 'skipped', next_attempt_at = NULL,"
            " leased_until = NULL, lease_token = NULL WHERE target_id = ? AND status = 'held'",
            (target_id,),
        )
    return found


def _target(conn: sqlite3.Connection, target_id: str) -> list[Any]:
    return list(
        conn.execute(f"SELECT {TARGET_COLS} FROM targets WHERE id = ?", (target_id,)).fetchone()
    )


def _disable(conn: sqlite3.Connection, target_id: str, now: float, probe: bool) -> None:
    """Disable the target and hold its pending unleased deliveries; `probe`: disabled after
    failures, so its first probe is due `reenable_after` from now."""
    conn.execute(
        "UPDATE targets SET disabled_at = CASE WHEN status = 'disabled' THEN disabled_at"
        " ELSE ? END, status = 'disabled', probe_delivery_id = NULL,"
        " probe_interval = CASE WHEN ? THEN reenable_after END,"
        " next_probe_at = CASE WHEN ? THEN ? + reenable_after END WHERE id = ?",
        (now, probe, probe, now, target_id),
    )
    _bump(conn, "targets_version")
    conn.execute(
        "UPDATE deliveries SET status = 'held', next_attempt_at = NULL, leased_until = NULL,"
        " lease_token = NULL WHERE target_id = ? AND status = 'pending'"
        " AND (leased_until IS NULL OR leased_until <= ?)",
        (target_id, now),
    )


def _release_held(conn: sqlite3.Connection, target_id: str, now: float) -> list[str]:
    """Every held delivery of the target pending, due `now` (claims take them by id)."""
    rows = conn.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, leased_until = NULL,"
        " lease_token = NULL WHERE target_id = ? AND status = 'held' RETURNING id",
        (now, target_id),
    ).fetchall()
    return sorted(row[0] for row in rows)


def _enable(conn: sqlite3.Connection, target_id: str, now: float) -> None:
    conn.execute(
        "UPDATE targets SET status = 'active', consecutive_failures = 0, disabled_at = NULL,"
        " next_probe_at = NULL, probe_interval = NULL, probe_delivery_id = NULL WHERE id = ?",
        (target_id,),
    )
    _bump(conn, "targets_version")
    _release_held(conn, target_id, now)


def target_outcome(
    conn: sqlite3.Connection,
    target_id: str,
    ok: bool,
    disable_after: int | None,
    gone: bool,
    now: float,
    cap: float,
) -> list[Any] | None:
    """Count a final outcome; disable after `disable_after` failures in a row (or `gone`),
    re-enable on a success after failures disabled it, double the wait after a failed
    probe (up to `cap`). Answers the target's row afterwards."""
    row = conn.execute(
        "SELECT consecutive_failures, status, probe_interval, probe_delivery_id FROM targets"
        " WHERE id = ?",
        (target_id,),
    ).fetchone()
    if row is None:
        return None
    failures, status, interval, probe = row
    if status == "disabled":
        if interval is None:  # disabled by hand: outcomes change nothing
            pass
        elif ok:
            _enable(conn, target_id, now)
        elif probe is not None:
            interval = min(interval * 2, cap)
            conn.execute(
                "UPDATE targets SET consecutive_failures = consecutive_failures + 1,"
                " probe_interval = ?, next_probe_at = ?, probe_delivery_id = NULL WHERE id = ?",
                (interval, now + interval, target_id),
            )
            _bump(conn, "targets_version")
        return _target(conn, target_id)
    failures = 0 if ok else failures + 1
    conn.execute("UPDATE targets SET consecutive_failures = ? WHERE id = ?", (failures, target_id))
    if gone or (not ok and disable_after is not None and failures >= disable_after):
        _disable(conn, target_id, now, True)
    return _target(conn, target_id)


def set_target_status(
    conn: sqlite3.Connection, target_id: str, status: str, now: float
) -> list[Any] | None:
    if conn.execute("SELECT 1 FROM targets WHERE id = ?", (target_id,)).fetchone() is None:
        return None
    if status == "active":
        _enable(conn, target_id, now)
    else:
        _disable(conn, target_id, now, False)
    return _target(conn, target_id)


# The distinct targets of held deliveries, one index probe each (a loose index scan).
HELD_TARGETS = (
    "WITH RECURSIVE t(id) AS ("
    " SELECT (SELECT min(target_id) FROM deliveries WHERE status = 'held')"
    " UNION ALL SELECT (SELECT min(target_id) FROM deliveries"
    " WHERE status = 'held' AND target_id > t.id) FROM t WHERE t.id IS NOT NULL)"
    " SELECT id FROM t WHERE id IS NOT NULL"
)


def probe_targets(conn: sqlite3.Connection, now: float) -> list[str]:
    """Start the probes that are due, release the held deliveries of active targets, skip
    those of deleted ones; answer the ids made pending."""
    made: list[str] = []
    for (target_id,) in conn.execute(HELD_TARGETS).fetchall():
        row = conn.execute(
            "SELECT status, probe_interval, next_probe_at, probe_delivery_id FROM targets"
            " WHERE id = ?",
            (target_id,),
        ).fetchone()
        if row is None:
            conn.execute(
                "UPDATE deliveries SET status = 'skipped', next_attempt_at = NULL,"
                " leased_until = NULL, lease_token = NULL"
                " WHERE target_id = ? AND status = 'held'",
                (target_id,),
            )
            continue
        status, interval, next_probe_at, probe = row
        if status == "active":
            made += _release_held(conn, target_id, now)
            continue
        if interval is None or next_probe_at is None or next_probe_at > now:
            continue
        out = conn.execute("SELECT status FROM deliveries WHERE id = ?", (probe,)).fetchone()
        if out is not None and out[0] == "pending":
            continue  # the last probe is still out
        (first,) = conn.execute(
            "SELECT id FROM deliveries WHERE target_id = ? AND status = 'held' ORDER BY id LIMIT 1",
            (target_id,),
        ).fetchone()
        conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, leased_until = NULL,"
            " lease_token = NULL WHERE id = ?",
            (now, first),
        )
        conn.execute(
            "UPDATE targets SET probe_delivery_id = ?, next_probe_at = ? WHERE id = ?",
            (first, now + interval, target_id),
        )
        _bump(conn, "targets_version")
        made.append(first)
    return made


def add_deliveries(conn: sqlite3.Connection, rows: list[list[Any]], attempts: list[Any]) -> None:
    number_ordered(conn, rows)
    insert_rows(conn, INSERT_DELIVERY_HEAD, DELIVERY_ROW_COLS, rows)
    if attempts:
        conn.executemany(INSERT_ATTEMPT, attempts)


def claim(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    lease_until: float,
    token: str,
    skip_hosts: list[str],
) -> str:
    """Lease up to `limit` due, unleased deliveries to hosts not in `skip_hosts` under
    `token`; answer them as one JSON array.

    Three statements that each return one row, not an UPDATE ... RETURNING that steps
    once per row.
    """
    ids = conn.execute(
        "SELECT json_group_array(id) FROM (SELECT d.id FROM deliveries AS d"
        " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
        " AND (d.leased_until IS NULL OR d.leased_until <= ?)"
        " AND (d.host IS NULL OR d.host NOT IN (SELECT value FROM json_each(?)))"
        f" AND {HEAD_OF_KEY} ORDER BY d.next_attempt_at LIMIT ?)",
        (now, now, orjson.dumps(skip_hosts).decode(), limit),
    ).fetchone()[0]
    if ids == "[]":
        return "[]"
    conn.execute(
        "UPDATE deliveries SET leased_until = ?, lease_token = ?"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (lease_until, token, ids),
    )
    rows: str = conn.execute(
        f"SELECT json_group_array(json_array({DELIVERY_JSON_COLS})) FROM deliveries"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (ids,),
    ).fetchone()[0]
    return rows


def requeue(conn: sqlite3.Connection, ids: list[str], now: float) -> int:
    # A finished ordered delivery that is retried by hand joins the back of its key.
    finished = conn.execute(
        "SELECT json_group_array(id) FROM (SELECT d.id FROM deliveries AS d"
        " JOIN json_each(?) AS r ON d.id = r.value"
        " WHERE d.ordering_key IS NOT NULL AND d.status != 'pending' ORDER BY d.id)",
        (orjson.dumps(ids).decode(),),
    ).fetchone()[0]
    for delivery_id in orjson.loads(finished):
        place = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'ordering_seq' RETURNING value"
        ).fetchone()[0]
        conn.execute("UPDATE deliveries SET ordering_seq = ? WHERE id = ?", (place, delivery_id))
    cur = conn.executemany(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, leased_until = NULL,"
        " lease_token = NULL WHERE id = ?",
        [(now, i) for i in ids],
    )
    return cur.rowcount


def cancel(conn: sqlite3.Connection, ids: list[str]) -> list[str]:
    rows = conn.execute(
        "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL,"
        " leased_until = NULL, lease_token = NULL"
        " FROM json_each(?) AS c WHERE deliveries.id = c.value AND deliveries.status = 'pending'"
        " RETURNING deliveries.id",
        (orjson.dumps(ids).decode(),),
    ).fetchall()
    return [row[0] for row in rows]


# `held` is {delivery id: lease token}; only rows still carrying the token are touched.
HELD_ROWS = (
    " FROM json_each(?) AS h WHERE deliveries.id = h.key AND deliveries.lease_token = h.value"
    " AND deliveries.status = 'pending'"
)


def renew(conn: sqlite3.Connection, held: dict[str, str], lease_until: float) -> list[str]:
    renewed = conn.execute(
        f"UPDATE deliveries SET leased_until = ?{HELD_ROWS} RETURNING deliveries.id",
        (lease_until, orjson.dumps(held).decode()),
    ).fetchall()
    return [row[0] for row in renewed]


def release(conn: sqlite3.Connection, held: dict[str, str]) -> None:
    conn.execute(
        f"UPDATE deliveries SET leased_until = NULL, lease_token = NULL{HELD_ROWS}",
        (orjson.dumps(held).decode(),),
    )


def defer(conn: sqlite3.Connection, delivery_id: str, token: str, until: float) -> bool:
    """Hand a held delivery back due at `until`: no attempt, the count unchanged."""
    return (
        conn.execute(
            "UPDATE deliveries SET next_attempt_at = ?, leased_until = NULL, lease_token = NULL"
            " WHERE id = ? AND lease_token = ? AND status = 'pending'",
            (until, delivery_id, token),
        ).rowcount
        > 0
    )


def hold(conn: sqlite3.Connection, held: dict[str, str]) -> list[str]:
    """Held rows of a disabled target (not its probe) become `held`; the rest of `held`
    just lose their lease."""
    rows = conn.execute(
        "UPDATE deliveries SET status = 'held', next_attempt_at = NULL, leased_until = NULL,"
        f" lease_token = NULL{HELD_ROWS} AND EXISTS (SELECT 1 FROM targets AS t"
        " WHERE t.id = deliveries.target_id AND t.status = 'disabled'"
        " AND t.probe_delivery_id IS NOT deliveries.id) RETURNING deliveries.id",
        (orjson.dumps(held).decode(),),
    ).fetchall()
    release(conn, held)
    return [row[0] for row in rows]


def prune(
    conn: sqlite3.Connection,
    events_before: float,
    idempotency_before: float,
    id_before: str,
    limit: int,
) -> int:
    """Drop up to `limit` of the oldest events received before `events_before`, with their
    finished deliveries; forget idempotency keys older than `idempotency_before`.

    Event ids start with their millisecond (`actions.ids`; `id_before` is the smallest id
    of `events_before`), so "received before" is a primary-key range from the start of the
    table, not a scan of every event; and the caller repeats in chunks, so pruning a large
    backlog never holds the writer for long.
    """
    conn.execute(
        "UPDATE events SET idem_key = NULL WHERE idem_key IS NOT NULL AND received_at < ?",
        (idempotency_before,),
    )
    old: str = conn.execute(
        "SELECT json_group_array(id) FROM (SELECT id FROM events"
        " WHERE id < ? AND received_at < ? ORDER BY id LIMIT ?)",
        (id_before, events_before, limit),
    ).fetchone()[0]
    if old == "[]":
        return 0
    ids = "SELECT value FROM json_each(?)"
    finished = f"status NOT IN ('pending', 'held') AND event_id IN ({ids})"
    conn.execute(
        f"DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {finished})",
        (old,),
    )
    conn.execute(f"DELETE FROM deliveries WHERE {finished}", (old,))
    count: int = conn.execute(f"DELETE FROM events WHERE id IN ({ids})", (old,)).rowcount
    return count


COMMANDS: dict[str, Callable[..., Any]] = {
    "create_app": create_app,
    "save_app": save_app,
    "delete_app": delete_app,
    "save_target": save_target,
    "delete_target": delete_target,
    "target_outcome": target_outcome,
    "set_target_status": set_target_status,
    "probe_targets": probe_targets,
    "hold": hold,
    "add_deliveries": add_deliveries,
    "claim": claim,
    "requeue": requeue,
    "cancel": cancel,
    "renew": renew,
    "release": release,
    "defer": defer,
    "prune": prune,
}


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _error(exc: Exception) -> str:
    if isinstance(exc, sqlite3.IntegrityError) and "apps.name" in str(exc):
        return "an app with that name already exists"
    return f"SQLite write failed: {exc}"


def _decode(request: list[Any]) -> list[Any]:
    """Turn the latin-1 text of byte columns back into bytes, in place."""
    command = request[1]
    if command == "event":
        _event_row(request[2])
        _delivery_rows(request[3])
    elif command == "add_deliveries":
        _delivery_rows(request[2])
    return request


def apply_batch(conn: sqlite3.Connection, requests: list[list[Any]], ttl: float) -> list[list[Any]]:
    """Apply every request in one transaction and commit once; answer each."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        answers: dict[int, Any] = {}
        events = [r for r in requests if r[1] == "event"]
        if events:
            results = add_events(conn, [(r[2], r[3], r[4]) for r in events], ttl)
            answers.update((id(r), a) for r, a in zip(events, results, strict=True))
        finishes = [r for r in requests if r[1] == "finish"]
        if finishes:
            recorded = finish_attempts(conn, [r[2] for r in finishes])
            answers.update((id(r), ok) for r, ok in zip(finishes, recorded, strict=True))
        out = [
            [r[0], True, answers[id(r)] if id(r) in answers else COMMANDS[r[1]](conn, *r[2:])]
            for r in requests
        ]
        conn.execute("COMMIT")
        return out
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return _apply_careful(conn, requests, ttl)


def _apply_careful(
    conn: sqlite3.Connection, requests: list[list[Any]], ttl: float
) -> list[list[Any]]:
    """The batch again, each request in its own savepoint."""
    out: list[list[Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for request in requests:
            conn.execute("SAVEPOINT op")
            try:
                result: Any = None
                if request[1] == "event":
                    result = add_events(conn, [(request[2], request[3], request[4])], ttl)[0]
                elif request[1] == "finish":
                    result = finish_attempts(conn, [request[2]])[0]
                else:
                    result = COMMANDS[request[1]](conn, *request[2:])
                conn.execute("RELEASE op")
                out.append([request[0], True, result])
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                out.append([request[0], False, _error(exc)])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def serve(conn: sqlite3.Connection, fd_in: int, fd_out: int, ttl: float) -> None:
    """Read requests until stdin closes; every read is one group commit.

    `[id, "stats"]` answers `[transactions, requests]` committed so far (for metrics and
    for tests that check that concurrent writes share transactions).
    """
    _write_all(fd_out, orjson.dumps([0, "ready"]) + b"\n")
    pending = b""
    transactions = committed = 0
    # One buffer for every read: os.read(fd, 1 MB) would map, remap and unmap a fresh
    # megabyte per transaction.
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    while True:
        size = os.readv(fd_in, [buffer])
        if not size:
            return
        pending += view[:size]
        *lines, pending = pending.split(b"\n")
        requests = [_decode(orjson.loads(line)) for line in lines if line]
        answers: list[list[Any]] = []
        stats = [r for r in requests if r[1] == "stats"]
        requests = [r for r in requests if r[1] != "stats"]
        if requests:
            try:
                answers = apply_batch(conn, requests, ttl)
                transactions += 1
                committed += len(requests)
            except Exception as exc:  # the transaction itself failed: every request did
                answers = [[r[0], False, _error(exc)] for r in requests]
        answers += [[r[0], True, [transactions, committed]] for r in stats]
        _write_all(fd_out, b"".join(orjson.dumps(a) + b"\n" for a in answers))


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group; the writer stops when the server closes its
    # stdin, after the last group commit, not mid-transaction with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, synchronous, ttl = argv[1], argv[2], float(argv[3])
    conn = connect(path, synchronous)
    try:
        serve(conn, sys.stdin.fileno(), sys.stdout.fileno(), ttl)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Every Redis key name hookgate uses, in one place.

Rate-limit keys share one hash tag (`{<prefix>rl}`) so the Lua script that touches an app
bucket and the global bucket together stays in one Redis Cluster slot.
"""

from __future__ import annotations


def bucket_tag(prefix: str) -> str:
    return "{" + prefix + "rl}"


def app_bucket(prefix: str, app_key: str) -> str:
    return f"{bucket_tag(prefix)}:app:{app_key}"


def global_bucket(prefix: str) -> str:
    return f"{bucket_tag(prefix)}:global"


def guard_prefix(prefix: str) -> str:
    """Prefix for the `limits` moving windows that guard against token guessing."""
    return f"{prefix}guard"


def store_tag(prefix: str) -> str:
    """What every store key starts with. One hash tag for the whole store: its Lua scripts
    touch an event, its deliveries and their indexes at once, which Redis Cluster allows
    only within one slot."""
    return "{" + prefix + "store}:"


# The Redis store's keys: name -> what follows `store_tag(prefix)`. A trailing ":" takes an
# id (or an index value); `RedisStore` hands this table to its Lua scripts, so no key name
# is spelt anywhere else.
STORE_KEYS: dict[str, str] = {
    # apps: hash per app {data: orjson, name}, the set of ids, name -> id, change counter
    "app": "app:",
    "apps": "apps",
    "app_names": "app_names",
    "apps_version": "apps_version",
    # webhook targets: hash per target {data: orjson, failures, status, reenable,
    # disabled_at, next_probe, interval, probe}, ids, counter
    "target": "target:",
    "targets": "targets",
    "targets_version": "targets_version",
    # events: hash per event {meta: orjson, payload: bytes, app, type, idem}; id indexes
    # (sorted sets, all scores 0, ordered by id) overall, per app and per event type; a
    # sorted set scored by received_at for retention
    "event": "evt:",
    "events": "events",
    "events_by_app": "events_app:",
    "events_by_type": "events_type:",
    "events_by_time": "events_time",
    # idempotency: string per "<app id>:<key>" holding the event id (with an expiry), and
    # a sorted set of those key names scored by the event's received_at for pruning
    "idem": "idem:",
    "idem_by_time": "idem_time",
    # deliveries: hash per delivery {meta: orjson, body, status, next, count, event,
    # target, rule}, a list of attempts (orjson) per delivery, id indexes overall and per
    # status, target, rule and event; `due` holds pending unleased ids scored by
    # next_attempt_at, `leases` claimed ids scored by lease expiry
    "delivery": "dlv:",
    "attempts": "attempts:",
    "deliveries": "dlvs",
    "dlvs_by_status": "dlvs_status:",
    "dlvs_by_target": "dlvs_target:",
    "dlvs_by_rule": "dlvs_rule:",
    "dlvs_by_event": "dlvs_event:",
    "due": "due",
    "leases": "leases",
    # delivery rate limits: string per bucket ("target:<id>", "rule:<id>:<n>") holding its
    # GCRA theoretical arrival time in microseconds, expiring when the bucket is full
    "delivery_slot": "slot:",
    # held deliveries (a disabled target's): per target a sorted set of ids (scores 0, so
    # in accept order), and the set of targets that have any
    "held": "held:",
    "held_targets": "held_targets",
    # FIFO ordering: a list per ordering key of its pending delivery ids in accept order;
    # only the head is ever in `due` or `leases`
    "order": "order:",
}


def store_key(prefix: str, name: str, suffix: str = "") -> str:
    """One store key: `store_key(p, "delivery", "dlv_01J...")`."""
    return store_tag(prefix) + STORE_KEYS[name] + suffix

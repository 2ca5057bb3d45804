"""Redis store: one Redis shared by several gateway and delivery worker processes.

Key layout (every name in `gateway.limits.keys.STORE_KEYS`, all under one hash tag
`{<redis.key_prefix>store}:` so each script's keys share a Redis Cluster slot):

- apps and webhook targets: a hash per record (the record as orjson, plus the fields a
  script changes alone: an app's `name`, a target's `failures` and `status`), a set of ids,
  `app_names` (name -> id, keeping names unique) and `apps_version`/`targets_version`
  counters, INCRed on every change so other processes reload;
- events: a hash per event (`meta` as orjson, `payload` as the raw bytes) and sorted sets
  of ids (all scores 0, so ordered by id, i.e. by time): every event, per app and per event
  type, for newest-first lists whose cursor is the last id seen; `events_time` (scored by
  `received_at`) drives retention;
- idempotency: a string per (app, key) holding the event id. A key whose event was
  received more than `ingest.idempotency_ttl_seconds` before a new one passes to the new
  event; Redis also expires it that long after it was set (a bound on memory, should
  pruning stop), and `idem_time` lets `prune` forget keys by the time of their event;
- deliveries: a hash per delivery (static `meta` as orjson, the rendered `body`, and the
  fields that change: `status`, `next`, `count`), a list of attempts, id indexes overall
  and per status, target, rule and event. A pending delivery sits in exactly one of two
  sorted sets: `due` (scored by `next_attempt_at`) or `leases` (scored by when its lease
  runs out), except an ordered one that does not head its key: it waits in the key's
  `order:` list (accept order, the order of the `add` scripts) until the head before it
  reaches a final status or is cancelled, and only then enters `due`. A held one (its
  target is disabled) sits in neither but in its target's `held:<target>` (ids in accept
  order), and `held_targets` names the targets that have any, so the periodic probe step
  touches only those.

Atomicity: every write is one Lua script, which Redis runs alone and replicates and
persists as a unit. `add_event` checks and sets the idempotency key, writes the event,
its deliveries and every index in one script, so an event is never visible without its
deliveries and two processes racing on one key store one event. `claim_due` is one
script: leases whose time ran out (their process died: the role XAUTOCLAIM plays for a
stream's consumer group) are claimed again first, then due rows move from `due` to
`leases`; no two processes can claim one row. A held row's hash keeps its lease token
(`lease`): `finish_attempt` checks it, then appends the attempt, updates the row, drops
the lease and re-queues a retry in `due` in one script; `renew` and `release` check it
too, so a holder whose lease was claimed by another process changes nothing.

Scripts that redis-py may resend after a dropped connection are safe to run twice:
`add_event` answers a replay of itself with the same id, `finish_attempt` does not record
the same attempt twice. Durability is Redis's: run it with `appendonly yes` (and
`appendfsync everysec` or `always`) for an answered event to survive a Redis restart.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from actions.model import Attempt, Delivery, DeliveryStatus, Lease, RateLimit, delivery_host
from gateway.errors import StoreError
from gateway.limits import keys
from gateway.models import (
    PROBE_INTERVAL_MAX,
    REENABLE_AFTER_DEFAULT,
    App,
    Event,
    TargetStatus,
    WebhookTarget,
)
from gateway.store.base import Accepted, DeliveryFilter, Page

P = ParamSpec("P")
R = TypeVar("R")

APP_FIELDS = tuple(f.name for f in dataclasses.fields(App))
DELIVERY_FIELDS = ("meta", "body", "status", "next", "count")
PRUNE_BATCH = 200  # events per prune script: Redis serves nothing else while one runs
SCAN_BATCH = 200  # index entries read per round trip while filtering a list


def _lua(name: str) -> str:
    return resources.files("gateway.store.redis").joinpath(f"lua/{name}.lua").read_text("utf-8")


# Shared by every script: ARGV[1] is the store's tag, `K.<name>` a key (prefix) from
# `keys.STORE_KEYS`, `opt` decodes an optional string ("" None, "=" + value otherwise).
_PRELUDE = (
    "local P = ARGV[1]\nlocal K = {"
    + ", ".join(f'{name} = P .. "{suffix}"' for name, suffix in keys.STORE_KEYS.items())
    + "}\n"
    + _lua("prelude")
)


# One file per script in lua/, each run with the prelude in front.
_SCRIPTS = {
    name: _lua(name)
    for name in (
        "add",
        "claim",
        "has_due",
        "finish",
        "requeue",
        "cancel",
        "release",
        "defer",
        "delivery_slot",
        "renew",
        "create_app",
        "save_app",
        "delete_app",
        "find_app",
        "save_target",
        "delete_target",
        "target_outcome",
        "set_target_status",
        "probe_targets",
        "hold",
        "find_idempotent",
        "prune",
    )
}


def _translated(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The one place redis-py's errors become `StoreError` (connection, timeout, script)."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RedisError as exc:
            raise StoreError(f"Redis store: {type(exc).__name__}: {exc}") from exc

    return call


def _opt(value: str | bytes | None) -> bytes:
    """An optional string for the scripts' `opt()`: empty for None, "=" + value otherwise."""
    if value is None:
        return b""
    return b"=" + (value if isinstance(value, bytes) else value.encode())


def _num(value: float) -> str:
    return repr(float(value))


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


# records <-> Redis values
def _app_data(app: App) -> bytes:
    return orjson.dumps({name: getattr(app, name) for name in APP_FIELDS})


def _app(data: Any) -> App:
    return App(**orjson.loads(data))


def _target_data(t: WebhookTarget) -> bytes:
    return orjson.dumps(
        {
            "id": t.id,
            "url": t.url,
            "secret": t.secret,
            "events": list(t.events),
            "filter": t.filter,
            "retry": t.retry if isinstance(t.retry, str) else list(t.retry),
            "disable_after": t.disable_after,
            "description": t.description,
            "created_at": t.created_at,
            "updated_at": t.updated_at,
            "rate": t.rate,
            "burst": t.burst,
            "ordering": t.ordering,
            "ordering_key": t.ordering_key,
        }
    )


TARGET_FIELDS = (
    "data",
    "failures",
    "status",
    "reenable",
    "disabled_at",
    "next_probe",
    "interval",
    "probe",
)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _target(
    data: Any,
    failures: Any,
    status: Any,
    reenable: Any = None,
    disabled_at: Any = None,
    next_probe: Any = None,
    interval: Any = None,
    probe: Any = None,
) -> WebhookTarget:
    d = orjson.loads(data)
    retry = d.pop("retry")
    events = tuple(d.pop("events"))
    return WebhookTarget(
        retry=retry if isinstance(retry, str) else tuple(retry),
        events=events,
        status=_text(status),  # type: ignore[arg-type]
        consecutive_failures=int(failures),
        reenable_after=float(reenable) if reenable is not None else REENABLE_AFTER_DEFAULT,
        disabled_at=_float(disabled_at),
        next_probe_at=_float(next_probe),
        probe_interval=_float(interval),
        probe_delivery_id=None if probe is None else _text(probe),
        **d,
    )


def _event_meta(e: Event) -> bytes:
    return orjson.dumps(
        {
            "app_id": e.app_id,
            "event_type": e.event_type,
            "received_at": e.received_at,
            "headers": e.headers,
            "matched_rules": list(e.matched_rules),
            "idempotency_key": e.idempotency_key,
        }
    )


def _event(event_id: bytes | str, meta: Any, payload: Any) -> Event:
    d = orjson.loads(meta)
    return Event(
        id=event_id if isinstance(event_id, str) else _text(event_id),
        payload=payload,
        matched_rules=tuple(d.pop("matched_rules")),
        **d,
    )


def _lease_args(lease: Lease | None) -> tuple[Any, Any]:
    return (b"", b"") if lease is None else (_num(lease.until), lease.token)


def _delivery_args(d: Delivery) -> list[Any]:
    fields: dict[str, Any] = {
        "event_id": d.event_id,
        "action_type": d.action_type,
        "url": d.url,
        "rule_id": d.rule_id,
        "target_id": d.target_id,
        "retry": list(d.retry),
        "secret_env": d.secret_env,
        "timeout_seconds": d.timeout_seconds,
        "disable_after": d.disable_after,
        "headers": [list(h) for h in d.headers],
        "created_at": d.created_at,
    }
    if d.rate_limit is not None:  # only when set: most deliveries have none
        fields["rate_limit"] = d.rate_limit.to_list()
    if d.ordering_key is not None:  # absent on unordered rows (and rows from before it)
        fields["ordering_key"] = d.ordering_key
    meta = orjson.dumps(fields)
    return [
        d.id,
        meta,
        _opt(d.body),
        d.status,
        _opt(None if d.next_attempt_at is None else _num(d.next_attempt_at)),
        d.attempt_count,
        _num(d.created_at),
        d.event_id,
        _opt(d.target_id),
        _opt(d.rule_id),
        delivery_host(d.url),
        _opt(d.ordering_key),
        len(d.attempts),
        *(_attempt_data(a) for a in d.attempts),
    ]


def _delivery(
    delivery_id: bytes | str, row: Sequence[Any], attempts: tuple[Attempt, ...] = ()
) -> Delivery:
    meta, body, status, next_at, count = row
    d = orjson.loads(meta)
    return Delivery(
        id=delivery_id if isinstance(delivery_id, str) else _text(delivery_id),
        status=_text(status),  # type: ignore[arg-type]
        body=body,
        retry=tuple(d.pop("retry")),
        headers=tuple(tuple(h) for h in d.pop("headers")),
        rate_limit=RateLimit.from_list(d.pop("rate_limit", None)),
        next_attempt_at=None if next_at is None else float(next_at),
        attempt_count=int(count),
        attempts=attempts,
        **d,
    )


def _attempt_data(a: Attempt) -> bytes:
    return orjson.dumps(
        {
            "at": a.at,
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "error": a.error,
            "response_excerpt": a.response_excerpt,
            "retry_after": a.retry_after,
            "request_method": a.request_method,
            "request_url": a.request_url,
            "request_headers": a.request_headers,
            "request_body": a.request_body,
            "response_headers": a.response_headers,
            "rate_slot_at": a.rate_slot_at,
        }
    )


class RedisStore:
    """`Store` on a shared Redis; the module docstring has the key layout and why each
    write is atomic."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "hookgate:",
        idempotency_ttl: float = 86_400,
        max_connections: int = 64,
    ) -> None:
        self._url = url
        self._tag = keys.store_tag(key_prefix).encode()
        self._prefix = key_prefix
        self._idem_ttl = _num(idempotency_ttl)
        self._max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    def _key(self, name: str, suffix: str = "") -> str:
        return keys.store_key(self._prefix, name, suffix)

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("the Redis store is not open")
        return self._client

    async def _run(self, script: str, *args: Any) -> Any:
        """Run one of `_SCRIPTS`; KEYS[1] only routes the call to the store's slot."""
        client = self._redis
        return await self._scripts[script](
            keys=[self._key("events")], args=[self._tag, *args], client=client
        )

    # lifecycle
    async def open(self) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=10,
            decode_responses=False,
            socket_connect_timeout=2,
            socket_timeout=10,
            # A pooled connection Redis has dropped fails once on reuse: retry quickly on a
            # new one. Timeouts are not retried; a connection lost after a script was sent
            # may run it twice, which the scripts tolerate (see the module docstring).
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            retry_on_error=[RedisConnectionError],
        )
        client = aioredis.Redis.from_pool(pool)
        self._scripts = {
            name: client.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()
        }
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            raise StoreError(f"cannot reach the Redis store at {self._url}: {exc}") from exc
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self._scripts = {}
            await client.aclose()

    @_translated
    async def ping(self) -> None:
        await self._redis.ping()

    # apps
    @_translated
    async def create_app(self, app: App) -> None:
        outcome = await self._run("create_app", app.id, app.name, _app_data(app))
        if outcome == 0:
            raise StoreError(f"an app named {app.name!r} already exists")
        if outcome == -1:
            raise StoreError(f"an app with id {app.id!r} already exists")

    @_translated
    async def save_app(self, app: App) -> None:
        if await self._run("save_app", app.id, app.name, _app_data(app)) == 0:
            raise StoreError(f"an app named {app.name!r} already exists")

    @_translated
    async def get_app(self, app_id: str) -> App | None:
        data = await self._redis.hget(self._key("app", app_id), "data")
        return None if data is None else _app(data)

    @_translated
    async def find_app(self, id_or_name: str) -> App | None:
        data = await self._run("find_app", id_or_name)
        return None if data is None else _app(data)

    @_translated
    async def list_apps(self) -> list[App]:
        ids = sorted(await self._redis.smembers(self._key("apps")))
        pipe = self._redis.pipeline(transaction=False)
        for app_id in ids:
            pipe.hget(self._key("app", _text(app_id)), "data")
        return [_app(data) for data in await pipe.execute() if data is not None]

    @_translated
    async def delete_app(self, app_id: str) -> bool:
        return bool(await self._run("delete_app", app_id))

    @_translated
    async def apps_version(self) -> int:
        return int(await self._redis.get(self._key("apps_version")) or 0)

    # events
    @_translated
    async def add_event(
        self, event: Event, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> Accepted:
        idem = None
        if event.idempotency_key is not None:
            idem = f"{event.app_id}:{event.idempotency_key}"
        args: list[Any] = [
            *_lease_args(lease),
            self._idem_ttl,
            1,
            event.id,
            _event_meta(event),
            event.payload,
            event.app_id,
            _opt(event.event_type),
            _num(event.received_at),
            _opt(idem),
            len(deliveries),
        ]
        for delivery in deliveries:
            args += _delivery_args(delivery)
        duplicate, event_id = await self._run("add", *args)
        return Accepted(_text(event_id), duplicate=bool(duplicate))

    @_translated
    async def find_idempotent(self, app_id: str, key: str, since: float) -> str | None:
        found = await self._run("find_idempotent", f"{app_id}:{key}", _num(since))
        return None if found is None else _text(found)

    @_translated
    async def get_event(self, event_id: str) -> Event | None:
        meta, payload = await self._redis.hmget(self._key("event", event_id), "meta", "payload")
        return None if meta is None else _event(event_id, meta, payload)

    @_translated
    async def get_events(self, event_ids: Sequence[str]) -> list[Event]:
        ids = list(dict.fromkeys(event_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hmget(self._key("event", event_id), "meta", "payload")
            rows = await pipe.execute()
        return [_event(i, meta, payload) for i, (meta, payload) in zip(ids, rows, strict=True)
                if meta is not None]  # fmt: skip

    @_translated
    async def list_events(
        self,
        *,
        app_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Event]:
        # Walk the narrowest id index; check the app on the hash when the index is the
        # event type's, and `since` always on the hash.
        if event_type is not None:
            index = self._key("events_by_type", event_type)
        elif app_id is not None:
            index = self._key("events_by_app", app_id)
        else:
            index = self._key("events")
        want_app = app_id.encode() if app_id is not None and event_type is not None else None

        def keep(fields: list[Any]) -> bool:
            app, at = fields
            return (want_app is None or app == want_app) and (
                since is None or (at is not None and float(at) >= since)
            )

        filtered = want_app is not None or since is not None
        ids = await self._page_ids(
            index, cursor, limit, "event", ("app", "at") if filtered else None, keep
        )
        pipe = self._redis.pipeline(transaction=False)
        for event_id in ids[:limit]:
            pipe.hmget(self._key("event", _text(event_id)), "meta", "payload")
        rows = await pipe.execute()
        events = [
            _event(i, meta, payload)
            for i, (meta, payload) in zip(ids, rows, strict=False)
            if meta is not None
        ]
        return Page(events, _text(ids[limit - 1]) if len(ids) > limit else None)

    async def _page_ids(
        self,
        index: str,
        cursor: str | None,
        limit: int,
        record: str,
        fields: tuple[str, ...] | None,
        keep: Callable[[list[Any]], bool],
    ) -> list[bytes]:
        """Up to `limit + 1` ids from a by-id index, newest first, below `cursor`, whose
        record `fields` pass `keep` (every id when `fields` is None)."""
        found: list[bytes] = []
        top = b"(" + cursor.encode() if cursor else b"+"
        batch = limit + 1 if fields is None else max(limit + 1, SCAN_BATCH)
        while len(found) <= limit:
            ids = cast(
                list[bytes], await self._redis.zrevrangebylex(index, top, b"-", start=0, num=batch)
            )
            if fields is None:
                found += ids
            elif ids:
                pipe = self._redis.pipeline(transaction=False)
                for i in ids:
                    pipe.hmget(self._key(record, _text(i)), *fields)
                rows = await pipe.execute()
                found += [i for i, row in zip(ids, rows, strict=True) if keep(row)]
            if len(ids) < batch:
                break
            top = b"(" + ids[-1]
        return found[: limit + 1]

    @_translated
    async def count_events(self) -> int:
        return int(await self._redis.zcard(self._key("events")))

    # webhook targets
    async def create_target(self, target: WebhookTarget) -> None:
        await self.save_target(target)

    @_translated
    async def save_target(self, target: WebhookTarget) -> None:
        await self._run(
            "save_target",
            target.id,
            _target_data(target),
            target.consecutive_failures,
            target.status,
            _num(target.reenable_after),
            _opt(None if target.disabled_at is None else _num(target.disabled_at)),
            _opt(None if target.next_probe_at is None else _num(target.next_probe_at)),
            _opt(None if target.probe_interval is None else _num(target.probe_interval)),
            _opt(target.probe_delivery_id),
        )

    @_translated
    async def get_target(self, target_id: str) -> WebhookTarget | None:
        row = await self._redis.hmget(self._key("target", target_id), *TARGET_FIELDS)
        return None if row[0] is None else _target(*row)

    @_translated
    async def list_targets(self) -> list[WebhookTarget]:
        ids = sorted(await self._redis.smembers(self._key("targets")))
        pipe = self._redis.pipeline(transaction=False)
        for target_id in ids:
            pipe.hmget(self._key("target", _text(target_id)), *TARGET_FIELDS)
        return [_target(*row) for row in await pipe.execute() if row[0] is not None]

    @_translated
    async def delete_target(self, target_id: str) -> bool:
        return bool(await self._run("delete_target", target_id))

    @_translated
    async def targets_version(self) -> int:
        return int(await self._redis.get(self._key("targets_version")) or 0)

    @_translated
    async def record_target_outcome(
        self,
        target_id: str,
        ok: bool,
        disable_after: int | None,
        gone: bool = False,
        *,
        now: float | None = None,
    ) -> WebhookTarget | None:
        row = await self._run(
            "target_outcome",
            target_id,
            int(ok),
            _opt(None if disable_after is None else str(disable_after)),
            int(gone),
            _num(time.time() if now is None else now),
            _num(PROBE_INTERVAL_MAX),
        )
        return None if row is None else _target(*row)

    @_translated
    async def set_target_status(
        self, target_id: str, status: TargetStatus, now: float
    ) -> WebhookTarget | None:
        row = await self._run("set_target_status", target_id, status, _num(now))
        return None if row is None else _target(*row)

    @_translated
    async def probe_targets(self, now: float) -> list[str]:
        return [_text(i) for i in await self._run("probe_targets", _num(now))]

    # deliveries
    @_translated
    async def add_deliveries(
        self, deliveries: Sequence[Delivery], lease: Lease | None = None
    ) -> None:
        if not deliveries:
            return
        args: list[Any] = [
            *_lease_args(lease),
            self._idem_ttl,
            0,
            len(deliveries),
        ]
        for delivery in deliveries:
            args += _delivery_args(delivery)
        await self._run("add", *args)

    @_translated
    async def has_due(self, now: float) -> bool:
        return bool(await self._run("has_due", _num(now)))

    @_translated
    async def claim_due(
        self, now: float, limit: int, lease: Lease, skip_hosts: Collection[str] = ()
    ) -> list[Delivery]:
        if limit < 1:
            return []
        rows = await self._run(
            "claim", _num(now), _num(lease.until), lease.token, limit, *sorted(skip_hosts)
        )
        return [_delivery(row[0], row[1:]) for row in rows]

    @_translated
    async def renew(self, held: Mapping[str, str], lease_until: float) -> list[str]:
        if not held:
            return []
        pairs = [value for item in held.items() for value in item]
        return [_text(i) for i in await self._run("renew", _num(lease_until), *pairs)]

    @_translated
    async def finish_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: float | None,
        lease_token: str,
    ) -> bool:
        recorded = await self._run(
            "finish",
            delivery_id,
            _attempt_data(attempt),
            status,
            _opt(None if next_attempt_at is None else _num(next_attempt_at)),
            lease_token,
        )
        return bool(recorded)

    @_translated
    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(self._key("delivery", delivery_id), *DELIVERY_FIELDS)
        pipe.lrange(self._key("attempts", delivery_id), 0, -1)
        row, attempts = await pipe.execute()
        if row[0] is None:
            return None
        return _delivery(
            delivery_id, row, tuple(Attempt.from_data(orjson.loads(a)) for a in attempts)
        )

    async def _deliveries(self, ids: Sequence[bytes]) -> list[Delivery]:
        """Rows without their attempts (as every list answers), skipping vanished ids."""
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hmget(self._key("delivery", _text(delivery_id)), *DELIVERY_FIELDS)
        rows = await pipe.execute()
        return [_delivery(i, row) for i, row in zip(ids, rows, strict=True) if row[0] is not None]

    @_translated
    async def list_deliveries(
        self, flt: DeliveryFilter, cursor: str | None = None, limit: int = 50
    ) -> Page[Delivery]:
        # The most selective index the filter names; the rest is checked on hash fields.
        wanted = {
            "event": flt.event_id,
            "target": flt.target_id,
            "rule": flt.rule_id,
            "status": flt.status,
        }
        used = next((name for name, value in wanted.items() if value is not None), None)
        index = self._key("deliveries") if used is None else self._key(f"dlvs_by_{used}")
        if used is not None:
            index += str(wanted[used])
        checks = [(n, str(v).encode()) for n, v in wanted.items() if v is not None and n != used]
        fields = (*(name for name, _ in checks), "created")

        def keep(row: list[Any]) -> bool:
            if flt.since is not None and float(row[-1]) < flt.since:
                return False
            return all(value == expected for value, (_, expected) in zip(row, checks, strict=False))

        filtered = bool(checks) or flt.since is not None
        ids = await self._page_ids(
            index, cursor, limit, "delivery", fields if filtered else None, keep
        )
        page = await self._deliveries(ids[:limit])
        return Page(page, _text(ids[limit - 1]) if len(ids) > limit else None)

    @_translated
    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        ids = cast(
            list[bytes], await self._redis.zrange(self._key("dlvs_by_event", event_id), 0, -1)
        )
        return await self._deliveries(ids)

    @_translated
    async def requeue(self, delivery_ids: Sequence[str], now: float) -> int:
        if not delivery_ids:
            return 0
        return int(await self._run("requeue", _num(now), *delivery_ids))

    @_translated
    async def cancel(self, delivery_ids: Sequence[str]) -> list[str]:
        if not delivery_ids:
            return []
        return [_text(i) for i in await self._run("cancel", *delivery_ids)]

    @_translated
    async def release(self, held: Mapping[str, str]) -> None:
        if held:
            await self._run("release", *(value for item in held.items() for value in item))

    @_translated
    async def defer(self, delivery_id: str, lease_token: str, until: float) -> bool:
        return bool(await self._run("defer", delivery_id, lease_token, _num(until)))

    @_translated
    async def take_delivery_slot(self, key: str, rate: float, burst: int, now: float) -> float:
        interval = max(1, round(1_000_000 / rate))
        wait = await self._run("delivery_slot", key, int(now * 1_000_000), interval, burst)
        return int(wait) / 1_000_000

    async def hold(self, held: Mapping[str, str]) -> list[str]:
        if not held:
            return []
        pairs = [value for item in held.items() for value in item]
        return [_text(i) for i in await self._run("hold", *pairs)]

    @_translated
    async def failed_since(self, since: float, target_id: str | None = None) -> list[str]:
        ids = cast(
            list[bytes], await self._redis.zrange(self._key("dlvs_by_status", "failed"), 0, -1)
        )
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hmget(self._key("delivery", _text(delivery_id)), "created", "target")
        rows = await pipe.execute()
        wanted = None if target_id is None else target_id.encode()
        return [
            _text(i)
            for i, (created, target) in zip(ids, rows, strict=True)
            if created is not None
            and float(created) >= since
            and (wanted is None or target == wanted)
        ]

    @_translated
    async def count_pending(self) -> int:
        return int(await self._redis.zcard(self._key("dlvs_by_status", "pending")))

    @_translated
    async def prune(self, events_before: float, idempotency_before: float) -> int:
        dropped = 0
        while True:
            events, keys_forgotten = await self._run(
                "prune", _num(events_before), _num(idempotency_before), PRUNE_BATCH
            )
            dropped += int(events)
            if events < PRUNE_BATCH and keys_forgotten < PRUNE_BATCH:
                return dropped

"""`POST /api/event/{token}`: the public ingest route, written as a raw ASGI endpoint.

This is the hot path, so it skips the router, the Request object and the middleware stack
and does its checks in docs/design.md §3's order, cheapest refusals first: method, token, rate
limits, content type, size (before reading the body), signature, JSON, schema,
idempotency. Only then are rules matched and the event committed with its deliveries;
202 is sent after the commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypedDict

import orjson
from fastjsonschema import JsonSchemaValueException
from starlette.types import Receive, Scope, Send

from actions import Delivery, EventInfo, Lease, SignatureError, plan_deliveries
from gateway.delivery.cancel_on import CancelIndex, cancel_superseded
from gateway.errors import StoreError
from gateway.http.openapi import Operation, operation
from gateway.http.protocol import RESPOND, Respond
from gateway.ids import new_id
from gateway.models import App, Event
from gateway.observability.logs import ACCESS

if TYPE_CHECKING:
    from gateway.http.appindex import AppEntry
    from gateway.runtime import Gateway
    from rules import Match


PREFIX = "/api/event/"
INGEST_PATH = PREFIX + "{token}"


class Accepted(TypedDict):
    accepted: bool
    event_id: str


class Duplicate(Accepted):
    duplicate: bool


INGEST = Operation(
    "Ingest one event (the secret event URL)",
    "ingest",
    202,
    Accepted,
    body={"type": "object"},
    admin=False,
    extra_success={200: ("duplicate idempotency key: the first event's id", Duplicate)},
    errors={
        400: "invalid_json / invalid_event: not JSON, not an object, too deep",
        401: "invalid_signature",
        404: "not_found: unknown, revoked or disabled token",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "schema_violation: the app's JSON Schema refused the event",
        429: "rate limited; Retry-After says when to try again",
        503: "store_unavailable: the event was not stored",
    },
    response_headers={429: {"Retry-After": "seconds until a token is available"}},
)
ROUTE = "/api/event/{token}"
JSON_HEADERS = [(b"content-type", b"application/json")]
STORE_UNAVAILABLE = (
    b'{"error":"store_unavailable","detail":"the event was not stored; try again shortly"}'
)
NOT_FOUND = b'{"error":"not_found"}'
RATE_LIMITED = b'{"rateLimited":true}'
METHOD_NOT_ALLOWED = b'{"error":"method_not_allowed"}'
INVALID_SIGNATURE = b'{"error":"invalid_signature"}'
NOT_OBJECT = b'{"error":"invalid_event","detail":"top level must be an object"}'
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/")
MAX_KEY_BYTES = 255
MAX_METRIC_KEYS = 100_000  # cached counter keys; beyond that they are built per request
MAX_STORED_HEADERS = 64
MAX_STORED_VALUE = 1024  # characters of each stored header value
# The sender's credentials to us (or to a proxy in front) are not part of the event.
UNSTORED_HEADERS = frozenset((b"authorization", b"proxy-authorization", b"cookie"))

access_log = logging.getLogger(ACCESS)
log = logging.getLogger("hookgate.ingest")


class Refusal(Exception):
    """A request ends here with this status and body (no traceback, no 500)."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or []


def _error(status: int, code: str, **fields: Any) -> Refusal:
    return Refusal(status, orjson.dumps({"error": code, **fields}))


def too_deep(value: Any, limit: int) -> bool:
    """Whether nesting exceeds `limit` levels (iterative: no recursion on hostile input)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def _schema_path(exc: JsonSchemaValueException, payload: Any) -> str:
    """The JSON pointer (RFC 6901) of the failing value: "" for the whole event.

    fastjsonschema names it like `data.items[1].qty`, which is ambiguous when a key holds
    '.' or '[' (its own `exc.path` splits `{"a.b": 1}` into `/a/b`), so the name is resolved
    against the payload itself, taking the longest key that fits at each step.
    """
    name = exc.name or "data"
    rest = name[4:] if name.startswith("data") else ""
    node = payload
    parts: list[str] = []
    while rest:
        if isinstance(node, list) and rest[0] == "[" and "]" in rest:
            index, _, rest = rest[1:].partition("]")
            if not index.isdigit() or int(index) >= len(node):
                break
            node = node[int(index)]
            parts.append(index)
        elif isinstance(node, dict) and rest[0] == ".":
            fits = [
                k
                for k in node
                if rest.startswith(k, 1) and (len(rest) == len(k) + 1 or rest[len(k) + 1] in ".[")
            ]
            if not fits:
                break
            key = max(fits, key=len)
            node, rest = node[key], rest[len(key) + 1 :]
            parts.append(key)
        else:
            break
    else:
        return _pointer(parts)
    # Not resolvable against the payload (e.g. a key the payload lacks): the split path.
    return _pointer(str(p) for p in list(exc.path or [])[1:])


def _pointer(parts: Iterable[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _idempotency_key(raw: bytes) -> str:
    """The stored form of an idempotency key: as sent up to 255 bytes, else its SHA-256.

    Cutting long keys short would make distinct keys that share a prefix collide, and the
    second event would be dropped as a "duplicate" of the first.
    """
    if len(raw) <= MAX_KEY_BYTES:
        return raw.decode("latin-1")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def stored_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers kept with the event: at most 64 names in arrival order, repeated
    names joined with ", " (RFC 9110 §5.3), each value cut at 1024 characters, credentials
    left out. The whole head is bounded already (`ingest.max_header_bytes`, 431 beyond)."""
    out: dict[str, str] = {}
    for name, value in raw:
        if name in UNSTORED_HEADERS:
            continue
        text = name.decode("latin-1")
        seen = out.get(text)
        if seen is not None:
            if len(seen) < MAX_STORED_VALUE:
                out[text] = (seen + ", " + value.decode("latin-1"))[:MAX_STORED_VALUE]
        elif len(out) < MAX_STORED_HEADERS:
            out[text] = value[:MAX_STORED_VALUE].decode("latin-1")
    return out


def _duplicate(event_id: str) -> bytes:
    return orjson.dumps({"accepted": True, "event_id": event_id, "duplicate": True})


@operation(INGEST)
class IngestEndpoint:
    """The ASGI callable for `/api/event/...`; one instance per app, holding the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        settings = gateway.settings
        self.max_body = settings.ingest.max_body_bytes
        self.max_depth = settings.ingest.max_depth
        self.type_fields = settings.ingest.event_type_fields
        self.idempotency_ttl = settings.ingest.idempotency_ttl_seconds
        self.log_requests = settings.log.requests
        self._inflight: dict[tuple[str, str], asyncio.Future[str]] = {}
        # (app id, status) -> its counter's key, built once rather than per request
        self._metric_keys: dict[tuple[str | None, int], tuple[str, Any]] = {}
        self._store_down = False
        self._cancel_index: CancelIndex | None = None

    def _cancels(self) -> CancelIndex:
        """The `cancel_on` index of the live rule set (rebuilt when the rules reload)."""
        ruleset = self.gw.rules.current
        index = self._cancel_index
        if index is None or index.ruleset is not ruleset:
            index = self._cancel_index = CancelIndex(ruleset)
        return index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        app_id: str | None = None
        event_id: str | None = None
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body, app_id, event_id, extra = await self._handle(scope, receive)
        except Refusal as refusal:
            status, body, extra = refusal.status, refusal.body, refusal.headers
            app_id = scope.get("hookgate.app_id")
        except StoreError as exc:
            # One line per outage, not a traceback per request: the store says when it is
            # back by committing again.
            if not self._store_down:
                self._store_down = True
                log.warning("events are refused while the store is unavailable: %s", exc)
            status, body = 503, STORE_UNAVAILABLE
            app_id = scope.get("hookgate.app_id")
        except Exception:
            log.exception("ingest failed unexpectedly")
            status, body = 503, b'{"error":"unavailable","detail":"the event was not stored"}'
            app_id = scope.get("hookgate.app_id")
        respond: Respond | None = scope.get(RESPOND)
        if respond is not None:  # hookgate's own protocol: the response in one write
            await respond(status, [*JSON_HEADERS, *extra], body)
        else:
            headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), *extra]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        gw = self.gw
        metric = self._metric_keys.get((app_id, status))
        if metric is None:
            metric = ("hookgate_events_total", (("app", app_id or "-"), ("outcome", str(status))))
            if len(self._metric_keys) < MAX_METRIC_KEYS:
                self._metric_keys[app_id, status] = metric
        gw.metrics.count(metric)
        if gw.workers is not None:
            gw.workers.load.arrivals += 1  # background delivery yields to this while it is busy
        if self.log_requests:
            gw.access.write(
                "request",
                {
                    "method": scope.get("method"),
                    "route": ROUTE,
                    "status": status,
                    "app_id": app_id,
                    "event_id": event_id,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, str | None, str | None, list[tuple[bytes, bytes]]]:
        """One event, in the order that refuses cheapest first: method, token, rate limits,
        media type, body, signature, JSON, schema; then idempotency, and the commit."""
        if scope["method"] != "POST":
            raise Refusal(405, METHOD_NOT_ALLOWED, [(b"allow", b"POST")])
        entry = await self._authenticate(scope)
        limit_headers = await self._rate_limit(entry)
        headers = dict(scope["headers"])
        body, payload = await self._payload(entry, headers, receive)
        app = entry.app
        now = time.time()
        key_bytes = headers.get(b"idempotency-key") or headers.get(b"webhook-id")
        key = _idempotency_key(key_bytes) if key_bytes else None
        if key is not None:
            original = await self._original(app.id, key, now)
            if original is not None:
                return 200, _duplicate(original), app.id, original, limit_headers
        status, event_id = await self._accept(app, scope, body, payload, key, now)
        if status == 200:
            return 200, _duplicate(event_id), app.id, event_id, limit_headers
        accepted = b'{"accepted":true,"event_id":"' + event_id.encode() + b'"}'
        return 202, accepted, app.id, event_id, limit_headers

    async def _authenticate(self, scope: Scope) -> AppEntry:
        """The app of this event URL. Lookup is by hash, so neither the answer nor its
        timing depends on how close a guess is; every miss gets the same bytes."""
        gw = self.gw
        token = scope["path"][len(PREFIX) :]
        client = scope.get("client")
        address = client[0] if client else "-"
        if gw.guard.blocked(address):
            gw.metrics.inc("hookgate_rate_limited_total", scope="guard")
            raise Refusal(429, RATE_LIMITED, [(b"retry-after", b"60")])
        entry = gw.apps.lookup(hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest())
        if entry is None:
            if await gw.guard.miss(address):
                gw.metrics.inc("hookgate_rate_limited_total", scope="guard")
                raise Refusal(429, RATE_LIMITED, [(b"retry-after", b"60")])
            raise Refusal(404, NOT_FOUND)
        scope["hookgate.app_id"] = entry.app.id
        return entry

    async def _rate_limit(self, entry: AppEntry) -> list[tuple[bytes, bytes]]:
        """The app bucket, then the global one, in one check: the RateLimit headers, or a
        429. Fail-closed (Redis down, on_redis_error = "closed") is a refusal like any
        other: 429 with a short Retry-After, counted under scope "unavailable"."""
        gw = self.gw
        check_now = gw.check_now
        if check_now is not None:
            decision = check_now(entry.app.id, entry.rate, entry.burst)
        else:
            decision = await gw.buckets.check(entry.app.id, entry.rate, entry.burst)
        limit_headers = [
            (b"ratelimit-limit", b"%d" % decision.limit),
            (b"ratelimit-remaining", b"%d" % decision.remaining),
            (b"ratelimit-reset", b"%d" % max(0, math.ceil(decision.reset))),
        ]
        if not decision.allowed:
            retry_after = str(max(1, math.ceil(decision.retry_after))).encode()
            gw.metrics.inc("hookgate_rate_limited_total", scope=decision.scope)
            raise Refusal(429, RATE_LIMITED, [(b"retry-after", retry_after), *limit_headers])
        return limit_headers

    async def _payload(
        self, entry: AppEntry, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[bytes, dict[str, Any]]:
        """The body and its JSON object, refused if it is a form, unsigned, not JSON, not an
        object, nested too deep, or against the app's schema."""
        content_type = headers.get(b"content-type", b"").lower()
        if content_type.startswith(FORM_TYPES):
            raise _error(
                415,
                "unsupported_media_type",
                detail="send the event as a JSON body (application/json); "
                "form-encoded and multipart bodies are not accepted",
            )
        body = await self._read_body(headers, receive)
        if entry.verifier is not None:
            try:
                entry.verifier.verify(
                    {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()},
                    body,
                    now=time.time(),
                )
            except SignatureError:
                raise Refusal(401, INVALID_SIGNATURE) from None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _error(400, "invalid_json", detail=f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise Refusal(400, NOT_OBJECT)
        # Nesting deeper than the limit needs at least that many brackets, so most bodies
        # skip the walk after two C-speed counts.
        if body.count(b"{") + body.count(b"[") > self.max_depth and too_deep(
            payload, self.max_depth
        ):
            raise _error(
                400, "invalid_json", detail=f"JSON nesting deeper than {self.max_depth} levels"
            )
        if entry.validator is not None:
            try:
                entry.validator(payload)
            except JsonSchemaValueException as exc:
                raise _error(
                    422, "schema_violation", detail=exc.message, path=_schema_path(exc, payload)
                ) from None
        return body, payload

    async def _accept(
        self,
        app: App,
        scope: Scope,
        body: bytes,
        payload: dict[str, Any],
        key: str | None,
        now: float,
    ) -> tuple[int, str]:
        """Match, plan and commit the event with its deliveries, then hand the due ones on:
        (202, new event id), or (200, the original's id) when the key was taken meanwhile."""
        gw = self.gw
        event_type = self._event_type(payload)
        event_id = new_id("evt_", now)
        matches, deliveries = self._plan(app, payload, event_type, event_id, now)
        event = Event(
            id=event_id,
            app_id=app.id,
            event_type=event_type,
            received_at=now,
            payload=body,
            headers=stored_headers(scope["headers"]),
            matched_rules=tuple([m.rule.id for m in matches]),
            idempotency_key=key,
        )
        lease = gw.lease() if deliveries else None
        # A delayed delivery is committed with the event but not held: whichever process
        # polls when it is due claims it. All delayed: no lease at all; mixed: released.
        # An ordered one likewise: only a claim knows whether it heads its key. (Inline
        # conditions, not a helper: this runs per delivery on the ingest hot path.)
        later = (
            [d for d in deliveries if d.next_attempt_at != now or d.ordering_key is not None]
            if deliveries
            else None
        )
        if later and len(later) == len(deliveries):
            lease = None
        accepted = await self._commit(event, deliveries, key, lease)
        if self._store_down:
            self._store_down = False
            log.warning("the store is back; events are accepted again")
        if accepted.duplicate:
            return 200, accepted.event_id
        cancels = self._cancels()
        if cancels.by_type:
            await cancel_superseded(
                gw.store,
                cancels,
                app_id=app.id,
                app_name=app.name,
                event_type=event_type,
                payload=payload,
                before=now,
            )
        info = EventInfo(event_id, event_type, app.name, now, body)
        await self._hand_on(deliveries, later, lease, info)
        return 202, event_id

    def _plan(
        self,
        app: App,
        payload: dict[str, Any],
        event_type: str | None,
        event_id: str,
        now: float,
    ) -> tuple[list[Match], list[Delivery]]:
        """The rules the event matches and the deliveries they plan; a disabled target
        keeps what it matches, as held deliveries."""
        rules = self.gw.rules
        matches = rules.current.match(app.name, payload, event_type=event_type)
        deliveries = plan_deliveries(matches, event_id, payload, now) if matches else []
        if rules.held is not None:
            held_matches, held = rules.held_deliveries(app.name, payload, event_type, event_id, now)
            matches, deliveries = [*matches, *held_matches], [*deliveries, *held]
        return matches, deliveries

    async def _hand_on(
        self,
        deliveries: list[Delivery],
        later: list[Delivery] | None,
        lease: Lease | None,
        info: EventInfo,
    ) -> None:
        """After the commit: release the lease of what is not due now (delayed, ordered,
        held), send the rest here or wake the workers, and wake the poller for ordered
        deliveries (claimed now if one heads its key, not at the next poll)."""
        gw = self.gw
        if later and lease is not None:
            await gw.store.release({d.id: lease.token for d in later})
            deliveries = [
                d
                for d in deliveries
                if d.next_attempt_at == info.received_at and d.ordering_key is None
            ]
        if deliveries:
            if gw.workers is None:
                gw.dispatch(deliveries, info, lease)
            else:
                gw.workers.wake()
        if later and any(d.ordering_key is not None for d in later):
            gw.wake_delivery()

    def _event_type(self, payload: dict[str, Any]) -> str | None:
        """The first of `ingest.event_type_fields` that holds a string."""
        for name in self.type_fields:
            value = payload.get(name)
            if isinstance(value, str):
                return value
        return None

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise _error(400, "invalid_json", detail="bad Content-Length header") from None
            if length > self.max_body:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refusal(400, b'{"error":"invalid_json","detail":"client disconnected"}')
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise self._too_large()
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> Refusal:
        return _error(413, "payload_too_large", limit=self.max_body)

    async def _original(self, app_id: str, key: str, now: float) -> str | None:
        """The event id already accepted under this idempotency key, if any."""
        pending = self._inflight.get((app_id, key))
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except Exception:
                return None
        return await self.gw.store.find_idempotent(app_id, key, now - self.idempotency_ttl)

    async def _commit(
        self, event: Event, deliveries: list[Any], key: str | None, lease: Lease | None
    ) -> Any:
        gw = self.gw
        if key is None:
            return await gw.store.add_event(event, deliveries, lease)
        # Concurrent requests with one key in this process wait for the first one's commit.
        marker = (event.app_id, key)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[marker] = future
        try:
            accepted = await gw.store.add_event(event, deliveries, lease)
            future.set_result(accepted.event_id)
            return accepted
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters fall back to the store
            raise
        finally:
            if self._inflight.get(marker) is future:
                del self._inflight[marker]

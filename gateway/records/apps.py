"""Integration apps: validation, creation, updates and token rotation.

Shared by the admin API and the CLI so both enforce the same rules. A token is returned
exactly once (on create and rotate); only its SHA-256 is stored.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Annotated, Any, TypedDict

from actions import ActionError, rfc3339
from gateway.config import Settings
from gateway.delivery.alerts import INTERNAL_APP
from gateway.errors import InvalidInput, StoreError
from gateway.http import signatures as inbound_signatures
from gateway.http.appindex import compile_schema
from gateway.http.openapi import Constraint
from gateway.ids import hash_token, new_id, new_token
from gateway.models import App
from gateway.store import Store

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MUTABLE = ("name", "enabled", "rate", "burst", "schema", "signing_secret", "signature_scheme")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidInput(
            "name",
            "must be 1-100 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    if value == INTERNAL_APP:
        raise InvalidInput(
            "name", f"{INTERNAL_APP!r} is reserved for hookgate's own events (failure alerts)"
        )
    return value


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("rate", "must be a number of requests per second > 0")
    if value <= 0 or value > 1_000_000:
        raise InvalidInput("rate", "must be > 0 and at most 1000000 requests per second")
    return float(value)


def _burst(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise InvalidInput("burst", "must be an integer between 1 and 1000000")
    return value


def _schema(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("schema", "must be a JSON Schema object")
    try:
        compile_schema(value)
    except Exception as exc:
        raise InvalidInput("schema", f"is not a valid JSON Schema: {exc}") from None
    return value


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput("signing_secret", "must be a non-empty string")
    return value


def _scheme(value: Any) -> str:
    if value is None:
        return inbound_signatures.DEFAULT_SCHEME
    if not isinstance(value, str) or value not in inbound_signatures.SCHEMES:
        raise InvalidInput(
            "signature_scheme", f"must be one of {', '.join(inbound_signatures.SCHEMES)}"
        )
    return value


def _check_pair(app: App) -> App:
    """The secret must key the app's scheme (`standard-webhooks` takes whsec_<base64>)."""
    if app.signing_secret is not None:
        try:
            inbound_signatures.validate(app.signature_scheme, app.signing_secret)
        except ActionError as exc:
            raise InvalidInput(
                "signing_secret", f"{exc} for signature_scheme {app.signature_scheme}"
            ) from None
    return app


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("enabled", "must be true or false")
    return value


VALIDATORS = {
    "name": _name,
    "enabled": _enabled,
    "rate": _rate,
    "burst": _burst,
    "schema": _schema,
    "signing_secret": _secret,
    "signature_scheme": _scheme,
}


async def create_app(
    store: Store,
    name: Any,
    *,
    rate: Any = None,
    burst: Any = None,
    schema: Any = None,
    signing_secret: Any = None,
    signature_scheme: Any = None,
    enabled: Any = True,
) -> tuple[App, str]:
    """Create an app; returns it and its token (the only time the token exists in clear)."""
    now = time.time()
    token = new_token()
    app = App(
        id=new_id("app_", now),
        name=_name(name),
        token_hash=hash_token(token),
        enabled=_enabled(enabled),
        rate=_rate(rate),
        burst=_burst(burst),
        schema=_schema(schema),
        signing_secret=_secret(signing_secret),
        signature_scheme=_scheme(signature_scheme),
        created_at=now,
        updated_at=now,
    )
    await _save(store, _check_pair(app), create=True)
    return app, token


async def update_app(store: Store, app: App, changes: dict[str, Any]) -> App:
    unknown = sorted(set(changes) - set(MUTABLE))
    if unknown:
        raise InvalidInput(unknown[0], f"cannot be changed; changeable: {', '.join(MUTABLE)}")
    values: dict[str, Any] = {key: VALIDATORS[key](value) for key, value in changes.items()}
    if "name" in values and values["name"] is None:
        raise InvalidInput("name", "cannot be null")
    updated = _check_pair(dataclasses.replace(app, **values, updated_at=time.time()))
    await _save(store, updated, create=False)
    return updated


async def rotate_token(store: Store, app: App, grace_seconds: Any = 0) -> tuple[App, str]:
    """A new token; the old one keeps working for `grace_seconds` (0: stops at once)."""
    if (
        isinstance(grace_seconds, bool)
        or not isinstance(grace_seconds, int | float)
        or not 0 <= grace_seconds <= 30 * 86400
    ):
        raise InvalidInput("grace_seconds", "must be a number of seconds between 0 and 2592000")
    now = time.time()
    token = new_token()
    rotated = dataclasses.replace(
        app,
        token_hash=hash_token(token),
        previous_token_hash=app.token_hash if grace_seconds > 0 else None,
        previous_token_expires_at=now + grace_seconds if grace_seconds > 0 else None,
        updated_at=now,
    )
    await _save(store, rotated, create=False)
    return rotated, token


async def _save(store: Store, app: App, *, create: bool) -> None:
    try:
        if create:
            await store.create_app(app)
        else:
            await store.save_app(app)
    except StoreError as exc:
        if "name" in str(exc) and "exists" in str(exc):
            raise InvalidInput("name", f"an app named {app.name!r} already exists") from None
        raise


def event_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/api/event/{token}"


class _AppFields(TypedDict):
    id: str
    name: str
    enabled: bool
    rate: float
    burst: int
    event_url: str | None
    created_at: str
    updated_at: str
    schema: dict[str, Any] | None
    has_signing_secret: bool
    signature_scheme: str | None


class AppRecord(_AppFields, total=False):
    """An integration app; `token` (and a real `event_url`) only on create and rotate."""

    previous_token_expires_at: str
    token: str


# The constraints the validators above enforce, for the OpenAPI document.
Name = Annotated[str, Constraint(pattern=NAME.pattern)]
Rate = Annotated[float, Constraint(exclusiveMinimum=0, maximum=1_000_000)]
Burst = Annotated[int, Constraint(minimum=1, maximum=1_000_000)]
Secret = Annotated[str, Constraint(minLength=1)]
Scheme = Annotated[str, Constraint(enum=list(inbound_signatures.SCHEMES))]


class AppFields(TypedDict, total=False):
    """The fields a PATCH may set."""

    name: Name
    enabled: bool
    rate: Rate | None
    burst: Burst | None
    schema: dict[str, Any] | None
    signing_secret: Secret | None
    signature_scheme: Scheme | None


class _AppName(TypedDict):
    name: Name


class AppCreate(_AppName, total=False):
    """A new app: `name` and, optionally, the rest of `AppFields`."""

    enabled: bool
    rate: Rate | None
    burst: Burst | None
    schema: dict[str, Any] | None
    signing_secret: Secret | None
    signature_scheme: Scheme | None


def app_json(app: App, settings: Settings, token: str | None = None) -> AppRecord:
    """The app record of docs/design.md §9; `token` and the real `event_url` only when given."""
    out: AppRecord = {
        "id": app.id,
        "name": app.name,
        "enabled": app.enabled,
        "rate": app.rate if app.rate is not None else settings.limits.app_rate,
        "burst": app.burst if app.burst is not None else settings.limits.app_burst,
        "event_url": event_url(settings, token) if token else None,
        "created_at": rfc3339(app.created_at),
        "updated_at": rfc3339(app.updated_at),
        "schema": app.schema,
        "has_signing_secret": app.signing_secret is not None,
        "signature_scheme": app.signature_scheme if app.signing_secret is not None else None,
    }
    if app.previous_token_expires_at and app.previous_token_expires_at > time.time():
        out["previous_token_expires_at"] = rfc3339(app.previous_token_expires_at)
    if token:
        out["token"] = token
    return out

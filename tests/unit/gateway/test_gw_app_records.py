"""App operations shared by the admin API and the CLI: validation, create, update, rotate."""

from __future__ import annotations

import time

import pytest

from gateway.config import load_settings
from gateway.errors import InvalidInput
from gateway.ids import hash_token
from gateway.records.apps import app_json, create_app, event_url, rotate_token, update_app
from gateway.store.memory import MemoryStore

SETTINGS = load_settings(
    env={},
    server={"public_url": "https://hooks.example/"},
    limits={"app_rate": 10, "app_burst": 20},
)


@pytest.fixture
async def store() -> MemoryStore:
    memory = MemoryStore()
    await memory.open()
    return memory


async def test_create_stores_only_the_hash_and_returns_the_token_once(store: MemoryStore) -> None:
    app, token = await create_app(store, "crm", rate=2, burst=3)
    (stored,) = await store.list_apps()
    assert stored.token_hash == hash_token(token)
    assert token not in repr(stored)
    out = app_json(app, SETTINGS, token)
    assert out["token"] == token
    assert out["event_url"] == f"https://hooks.example/api/event/{token}"
    assert (out["rate"], out["burst"]) == (2.0, 3)
    listed = app_json(app, SETTINGS)
    assert "token" not in listed and listed["event_url"] is None
    assert event_url(SETTINGS, "t") == "https://hooks.example/api/event/t"


async def test_defaults_show_the_configured_limits(store: MemoryStore) -> None:
    app, _ = await create_app(store, "crm")
    out = app_json(app, SETTINGS)
    assert (out["rate"], out["burst"]) == (10.0, 20)
    assert out["has_signing_secret"] is False and out["signature_scheme"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "-dash"}, "name"),
        ({"name": "a" * 101}, "name"),
        ({"name": 5}, "name"),
        ({"rate": 0}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"burst": 0}, "burst"),
        ({"burst": 1.5}, "burst"),
        ({"schema": []}, "schema"),
        ({"schema": {"type": "no-such-type"}}, "schema"),
        ({"signing_secret": ""}, "signing_secret"),
        ({"signing_secret": "whsec_notbase64!!"}, "signing_secret"),
        ({"signature_scheme": "md5"}, "signature_scheme"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
async def test_bad_fields_are_refused_naming_the_field(
    store: MemoryStore, fields: dict[str, object], field: str
) -> None:
    fields.setdefault("name", "crm")
    name = fields.pop("name")
    with pytest.raises(InvalidInput) as raised:
        await create_app(store, name, **fields)
    assert raised.value.field == field
    assert await store.list_apps() == []


async def test_a_taken_name_is_a_validation_error(store: MemoryStore) -> None:
    await create_app(store, "crm")
    with pytest.raises(InvalidInput) as raised:
        await create_app(store, "crm")
    assert raised.value.field == "name"
    assert "already exists" in raised.value.message


async def test_update_changes_only_mutable_fields(store: MemoryStore) -> None:
    app, _ = await create_app(store, "crm")
    updated = await update_app(store, app, {"rate": 4, "enabled": False})
    assert (updated.rate, updated.enabled) == (4.0, False)
    assert (await store.get_app(app.id)) == updated
    with pytest.raises(InvalidInput) as raised:
        await update_app(store, app, {"token_hash": "x"})
    assert raised.value.field == "token_hash"
    with pytest.raises(InvalidInput):
        await update_app(store, app, {"name": None})


async def test_a_scheme_change_is_checked_against_the_kept_secret(store: MemoryStore) -> None:
    app, _ = await create_app(store, "gh", signing_secret="plain-secret", signature_scheme="github")
    with pytest.raises(InvalidInput) as raised:
        await update_app(store, app, {"signature_scheme": "standard-webhooks"})
    assert raised.value.field == "signing_secret"
    assert "plain-secret" not in raised.value.message


async def test_rotation_with_grace_keeps_the_old_hash_until_it_expires(store: MemoryStore) -> None:
    app, old = await create_app(store, "crm")
    rotated, new = await rotate_token(store, app, grace_seconds=60)
    assert new != old
    assert rotated.token_hash == hash_token(new)
    assert rotated.previous_token_hash == hash_token(old)
    assert rotated.previous_token_expires_at is not None
    assert rotated.previous_token_expires_at > time.time()
    assert "previous_token_expires_at" in app_json(rotated, SETTINGS)
    now_only, _ = await rotate_token(store, rotated, grace_seconds=0)
    assert now_only.previous_token_hash is None


@pytest.mark.parametrize("grace", [-1, True, "60", 30 * 86400 + 1])
async def test_a_bad_grace_is_refused(store: MemoryStore, grace: object) -> None:
    app, _ = await create_app(store, "crm")
    with pytest.raises(InvalidInput) as raised:
        await rotate_token(store, app, grace_seconds=grace)
    assert raised.value.field == "grace_seconds"

"""Settings: one frozen dataclass per TOML section, loaded once from file + environment.

Precedence, lowest first: built-in defaults, the TOML file (`--config`, `$HOOKGATE_CONFIG`,
else `./hookgate.toml` when present), then `HOOKGATE_<SECTION>_<KEY>` variables and the
short aliases `HOOKGATE_ADMIN_TOKEN` and `HOOKGATE_REDIS_URL`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

ENV_PREFIX = "HOOKGATE_"
ENV_ALIASES = {
    "HOOKGATE_ADMIN_TOKEN": ("server", "admin_token"),
    "HOOKGATE_REDIS_URL": ("redis", "url"),
    "HOOKGATE_POSTGRES_URL": ("storage", "postgres_url"),
}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: str = ""
    public_url: str = ""
    workers: int = 1
    # Proxies whose X-Forwarded-For/-Proto are believed: "*" or addresses/CIDRs; none by
    # default, so a sender cannot choose the address the guessing guard and logs see.
    forwarded_allow_ips: tuple[str, ...] = ()
    # Longest wait before restarting a child process (delivery worker, SQLite writer) that
    # keeps dying; the wait doubles from 0.5 s up to this.
    restart_backoff_max_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class StorageSettings:
    backend: str = "sqlite"
    data_dir: str = "./data"
    retention_days: float = 30
    synchronous: str = "full"  # full: fsync every group commit; normal: survive kill -9 only
    postgres_url: str = "postgresql://127.0.0.1:5432/hookgate"  # storage.backend = "postgres"


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    backend: str = "memory"
    app_rate: float = 10
    app_burst: int = 10
    global_rate: float = 50
    global_burst: int = 50
    on_redis_error: str = "open"
    unknown_token_per_minute: int = 60


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "hookgate:"


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = 16_384  # all request headers together (names and values)
    max_depth: int = 64
    event_type_fields: tuple[str, ...] = ("event_type", "eventType", "event", "type")
    idempotency_ttl_seconds: float = 86_400


@dataclass(frozen=True, slots=True)
class RulesSettings:
    dir: str = "./rules.d"
    reload: bool = True
    poll_seconds: float = 0.5
    default_region: str = "US"


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    timeout_seconds: float = 15
    concurrency: int = 64
    per_host_concurrency: int = 8
    allow_private_targets: bool = False
    # CIDRs a target may resolve to although private (an internal CRM on 10.1.2.0/24);
    # allow_private_targets stays the blanket switch.
    allowed_networks: tuple[str, ...] = ()
    poll_seconds: float = 0.25
    lease_seconds: float = 60.0
    max_queued_per_host: int = 1000  # a worker's queue for one host; the rest stays unclaimed
    workers: int = 1  # delivery worker processes `serve` runs; 0: deliver inside the server
    worker_nice: int = 10
    yield_to_ingest: bool = True
    min_rate_under_load: float = 100.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    requests: bool = True


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    # The operator console at /console (admin token sign-in); false: the routes do not exist.
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    log: LogSettings = field(default_factory=LogSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"

    def validate(self) -> Settings:
        """Refuse combinations that would misbehave silently; return self for chaining."""
        from gateway.store.registry import BACKENDS  # the one list of backends

        choices: dict[tuple[str, str], tuple[str, ...]] = {
            ("storage", "backend"): tuple(BACKENDS),
            ("storage", "synchronous"): ("full", "normal"),
            ("limits", "backend"): ("memory", "redis"),
            ("limits", "on_redis_error"): ("open", "closed"),
            ("log", "level"): ("debug", "info", "warning", "error"),
        }
        for (section, key), allowed in choices.items():
            value = getattr(getattr(self, section), key)
            if value not in allowed:
                raise ConfigError(
                    f"{section}.{key} must be one of {', '.join(allowed)}, not {value!r}"
                )
        if self.server.workers > 1 and self.limits.backend == "memory":
            raise ConfigError(
                'server.workers > 1 needs limits.backend = "redis": in-memory buckets are per '
                "process, so every worker would grant the full rate"
            )
        for name in ("app_rate", "global_rate"):
            if getattr(self.limits, name) <= 0:
                raise ConfigError(f"limits.{name} must be > 0")
        for name in ("app_burst", "global_burst"):
            if getattr(self.limits, name) < 1:
                raise ConfigError(f"limits.{name} must be >= 1")
        if self.ingest.max_body_bytes < 2 or self.ingest.max_depth < 1:
            raise ConfigError("ingest.max_body_bytes must be >= 2 and ingest.max_depth >= 1")
        if not 0.5 <= self.server.restart_backoff_max_seconds <= 3600:
            raise ConfigError("server.restart_backoff_max_seconds must be between 0.5 and 3600")
        if self.ingest.max_header_bytes < 1024:
            raise ConfigError("ingest.max_header_bytes must be >= 1024")
        for entry in self.server.forwarded_allow_ips:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f'server.forwarded_allow_ips: {entry!r} is not "*", an address or a CIDR'
                ) from None
        for entry in self.delivery.allowed_networks:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f"delivery.allowed_networks: {entry!r} is not an address or a CIDR"
                ) from None
        return self


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _coerce(section: str, key: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a TOML or environment value to the field's type, with a clear error."""
    where = f"{section}.{key} ({source})"
    origin = typing.get_origin(hint)
    given = value  # what the operator wrote, for the error message
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if hint is int:
            # int(8000.5) would silently drop the fraction of a TOML float
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if origin is tuple:
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    import orjson

                    value = orjson.loads(text)
                else:
                    value = [part.strip() for part in text.split(",") if part.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return tuple(value)
    except (ValueError, TypeError) as exc:
        kind = "a list of strings" if origin is tuple else getattr(hint, "__name__", hint)
        raise ConfigError(f"{where}: cannot use {given!r} as {kind}") from exc
    raise ConfigError(f"{where}: unsupported setting type")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Mapping[str, Any],
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides.

    `overrides` are per-section mappings (`load_settings(limits={"app_rate": 5})`), applied
    last; tests and the CLI use them instead of mutating anything global.
    """
    env = os.environ if env is None else env
    if path is None:
        path = env.get("HOOKGATE_CONFIG") or (
            "hookgate.toml" if Path("hookgate.toml").exists() else None
        )
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc

    settings = Settings()
    known = {f.name: f for f in fields(Settings)}
    for section, values in data.items():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        settings = _apply(settings, section, values, f"file {path}")

    env_values: dict[str, dict[str, Any]] = {}
    for name, (section, key) in ENV_ALIASES.items():
        if env.get(name):
            env_values.setdefault(section, {})[key] = env[name]
    for section in known:
        hints = _section_types(type(getattr(settings, section)))
        for key in hints:
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in env:
                env_values.setdefault(section, {})[key] = env[name]
    for section, values in env_values.items():
        settings = _apply(settings, section, values, "environment")
    for section, values in overrides.items():
        if section not in known:
            raise ConfigError(f"unknown settings section {section!r}")
        settings = _apply(settings, section, dict(values), "override")
    return settings.validate()


def _apply(settings: Settings, section: str, values: Mapping[str, Any], source: str) -> Settings:
    current = getattr(settings, section)
    hints = _section_types(type(current))
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{section}.{key} ({source}): unknown setting")
        changes[key] = _coerce(section, key, value, hints[key], source)
    return replace(settings, **{section: replace(current, **changes)})


def as_dict(settings: Settings) -> dict[str, Any]:
    """Settings as plain data (for `--json` output and debugging); secrets redacted."""
    out = dataclasses.asdict(settings)
    if out["server"]["admin_token"]:
        out["server"]["admin_token"] = "<redacted>"
    return out

"""Settings: documented defaults, TOML file, environment, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import harness
import pytest

from gateway.config import Settings, as_dict, load_settings
from gateway.errors import ConfigError

# docs/design.md §9, as documented: scripts and deployments depend on these values.
DOCUMENTED_DEFAULTS = {
    "server": {
        "host": "127.0.0.1",
        "port": 8000,
        "admin_token": "",
        "public_url": "",
        "forwarded_allow_ips": (),
    },
    "storage": {"backend": "sqlite", "data_dir": "./data", "retention_days": 30},
    "limits": {
        "backend": "memory",
        "app_rate": 10,
        "app_burst": 10,
        "global_rate": 50,
        "global_burst": 50,
        "on_redis_error": "open",
    },
    "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": "hookgate:"},
    "ingest": {
        "max_body_bytes": 1048576,
        "max_header_bytes": 16384,
        "max_depth": 64,
        "event_type_fields": ("event_type", "eventType", "event", "type"),
        "idempotency_ttl_seconds": 86400,
    },
    "rules": {"dir": "./rules.d", "reload": True},
    "delivery": {
        "timeout_seconds": 15,
        "concurrency": 64,
        "per_host_concurrency": 8,
        "allow_private_targets": False,
    },
}


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in an empty directory, so no ./hookgate.toml is picked up."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings(None, env={})
    for section, values in DOCUMENTED_DEFAULTS.items():
        for key, documented in values.items():
            actual = getattr(getattr(settings, section), key)
            assert actual == documented, f"{section}.{key}: {actual!r} != {documented!r}"
            assert type(actual) is type(getattr(getattr(Settings(), section), key))
    assert settings == Settings()
    assert settings.base_url == "http://127.0.0.1:8000"


def test_a_toml_file_sets_values_of_every_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hookgate.toml",
        """
[server]
host = "0.0.0.0"
port = 9000
public_url = "https://hooks.example.test/"

[limits]
app_rate = 2.5
global_burst = 7

[ingest]
event_type_fields = ["kind"]

[rules]
reload = false
""",
    )
    settings = load_settings(path, env={})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)
    assert settings.base_url == "https://hooks.example.test"
    assert (settings.limits.app_rate, settings.limits.global_burst) == (2.5, 7)
    assert settings.ingest.event_type_fields == ("kind",)
    assert settings.rules.reload is False
    assert settings.limits.app_burst == 10  # untouched keys keep their defaults


def test_integers_are_accepted_for_float_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "h.toml", "[limits]\napp_rate = 3\n"), env={})
    assert settings.limits.app_rate == 3.0 and isinstance(settings.limits.app_rate, float)


def test_hookgate_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.toml", "[server]\nport = 9100\n")
    assert load_settings(None, env={"HOOKGATE_CONFIG": str(path)}).server.port == 9100


def test_hookgate_toml_in_the_working_directory_is_read(empty_cwd: Path, tmp_path: Path) -> None:
    write(empty_cwd / "hookgate.toml", "[server]\nport = 9200\n")
    assert load_settings(None, env={}).server.port == 9200
    named = write(tmp_path / "named.toml", "[server]\nport = 9300\n")
    assert load_settings(None, env={"HOOKGATE_CONFIG": str(named)}).server.port == 9300
    assert load_settings(named, env={}).server.port == 9300


def test_an_explicit_path_beats_hookgate_config(tmp_path: Path) -> None:
    explicit = write(tmp_path / "a.toml", "[server]\nport = 9001\n")
    from_env = write(tmp_path / "b.toml", "[server]\nport = 9002\n")
    settings = load_settings(explicit, env={"HOOKGATE_CONFIG": str(from_env)})
    assert settings.server.port == 9001


def test_environment_overrides_with_type_coercion() -> None:
    settings = load_settings(
        None,
        env={
            "HOOKGATE_SERVER_PORT": "9000",
            "HOOKGATE_LIMITS_GLOBAL_RATE": "100.5",
            "HOOKGATE_LIMITS_APP_BURST": " 20 ",
            "HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKGATE_RULES_RELOAD": "off",
            "HOOKGATE_STORAGE_DATA_DIR": "/var/lib/hookgate",
            "HOOKGATE_SOMETHING_ELSE": "ignored",
        },
    )
    assert settings.server.port == 9000
    assert settings.limits.global_rate == 100.5
    assert settings.limits.app_burst == 20
    assert settings.delivery.allow_private_targets is True
    assert settings.rules.reload is False
    assert settings.storage.data_dir == "/var/lib/hookgate"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans_from_the_environment(text: str, expected: bool) -> None:
    settings = load_settings(None, env={"HOOKGATE_RULES_RELOAD": text})
    assert settings.rules.reload is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["kind", "type"]', ("kind", "type")),
        ("kind, type ,event", ("kind", "type", "event")),
        ("kind", ("kind",)),
        ("[]", ()),
    ],
)
def test_lists_from_the_environment_as_json_or_comma_separated(
    text: str, expected: tuple[str, ...]
) -> None:
    settings = load_settings(None, env={"HOOKGATE_INGEST_EVENT_TYPE_FIELDS": text})
    assert settings.ingest.event_type_fields == expected


def test_short_aliases() -> None:
    settings = load_settings(
        None,
        env={"HOOKGATE_ADMIN_TOKEN": "from-alias", "HOOKGATE_REDIS_URL": "redis://127.0.0.1:7/1"},
    )
    assert settings.server.admin_token == "from-alias"
    assert settings.redis.url == "redis://127.0.0.1:7/1"


def test_precedence_defaults_file_environment_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hookgate.toml",
        "[limits]\napp_rate = 5\napp_burst = 5\nglobal_rate = 5\n[server]\nport = 8001\n",
    )
    env = {"HOOKGATE_LIMITS_APP_RATE": "6", "HOOKGATE_LIMITS_APP_BURST": "6"}

    file_only = load_settings(path, env={})
    assert (file_only.limits.app_rate, file_only.limits.global_burst) == (5, 50)

    with_env = load_settings(path, env=env)
    assert (with_env.limits.app_rate, with_env.limits.app_burst) == (6, 6)
    assert (with_env.limits.global_rate, with_env.server.port) == (5, 8001)

    everything = load_settings(path, env=env, limits={"app_rate": 7})
    assert everything.limits.app_rate == 7
    assert everything.limits.app_burst == 6
    assert everything.limits.global_rate == 5
    assert everything.limits.global_burst == 50


def test_overrides_apply_without_a_file() -> None:
    settings = load_settings(None, env={}, server={"port": 1234}, rules={"reload": "no"})
    assert (settings.server.port, settings.rules.reload) == (1234, False)


# errors


def config_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_unknown_section_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "h.toml", "[sever]\nport = 1\n")
    message = config_error(path, env={})
    assert "unknown section [sever]" in message and str(path) in message


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    message = config_error(write(tmp_path / "h.toml", "[server]\nprot = 1\n"), env={})
    assert "server.prot" in message and "unknown setting" in message


def test_a_section_must_be_a_table(tmp_path: Path) -> None:
    message = config_error(write(tmp_path / "h.toml", "server = 5\n"), env={})
    assert "[server] must be a table" in message


def test_unknown_override_section_and_key() -> None:
    assert "unknown settings section 'sever'" in config_error(None, env={}, sever={"a": 1})
    message = config_error(None, env={}, server={"prot": 1})
    assert "server.prot" in message and "unknown setting" in message


@pytest.mark.parametrize(
    ("toml", "where", "shown"),
    [
        ('[server]\nport = "eighty"\n', "server.port", "'eighty'"),
        ("[server]\nport = 8000.5\n", "server.port", "8000.5"),
        ("[server]\nport = true\n", "server.port", "True"),
        ("[server]\nhost = 5\n", "server.host", "5"),
        ('[rules]\nreload = "maybe"\n', "rules.reload", "'maybe'"),
        ('[limits]\napp_rate = "fast"\n', "limits.app_rate", "'fast'"),
        ("[ingest]\nevent_type_fields = [1, 2]\n", "ingest.event_type_fields", "[1, 2]"),
    ],
)
def test_bad_types_in_the_file(tmp_path: Path, toml: str, where: str, shown: str) -> None:
    message = config_error(write(tmp_path / "h.toml", toml), env={})
    assert message.startswith(f"{where} (file ")
    assert f"cannot use {shown}" in message


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("HOOKGATE_SERVER_PORT", "eighty", "server.port"),
        ("HOOKGATE_SERVER_PORT", "80.5", "server.port"),
        ("HOOKGATE_LIMITS_APP_RATE", "fast", "limits.app_rate"),
        ("HOOKGATE_RULES_RELOAD", "maybe", "rules.reload"),
        ("HOOKGATE_INGEST_EVENT_TYPE_FIELDS", "[1, 2]", "ingest.event_type_fields"),
        ("HOOKGATE_INGEST_EVENT_TYPE_FIELDS", '["open', "ingest.event_type_fields"),
    ],
)
def test_bad_types_in_the_environment(name: str, value: str, where: str) -> None:
    message = config_error(None, env={name: value})
    assert message.startswith(f"{where} (environment): cannot use {value!r} as ")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("storage", "backend", "mysql"),
        ("storage", "synchronous", "sometimes"),
        ("limits", "backend", "memcached"),
        ("limits", "on_redis_error", "ajar"),
        ("log", "level", "loud"),
    ],
)
def test_bad_choices(section: str, key: str, value: str) -> None:
    message = config_error(None, env={}, **{section: {key: value}})
    assert message.startswith(f"{section}.{key} must be one of ")
    assert message.endswith(f"not {value!r}")


def test_bad_choice_from_the_environment_names_the_setting() -> None:
    message = config_error(None, env={"HOOKGATE_STORAGE_BACKEND": "mysql"})
    assert "storage.backend must be one of" in message and "'mysql'" in message


def test_several_workers_need_redis_limits() -> None:
    message = config_error(None, env={}, server={"workers": 2})
    assert "server.workers > 1" in message and 'limits.backend = "redis"' in message
    settings = load_settings(None, env={}, server={"workers": 2}, limits={"backend": "redis"})
    assert settings.server.workers == 2
    assert load_settings(None, env={}, server={"workers": 1}).server.workers == 1


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"app_rate": 0}, "limits.app_rate must be > 0"),
        ({"global_rate": -1}, "limits.global_rate must be > 0"),
        ({"app_burst": 0}, "limits.app_burst must be >= 1"),
        ({"global_burst": 0}, "limits.global_burst must be >= 1"),
    ],
)
def test_impossible_limits(values: dict[str, float], fragment: str) -> None:
    assert fragment in config_error(None, env={}, limits=values)


def test_impossible_ingest_limits() -> None:
    assert "ingest.max_body_bytes must be >= 2" in config_error(
        None, env={}, ingest={"max_depth": 0}
    )


def test_a_missing_file_and_bad_toml(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert config_error(missing, env={}) == f"config file {missing} does not exist"
    assert "does not exist" in config_error(None, env={"HOOKGATE_CONFIG": str(missing)})
    broken = write(tmp_path / "broken.toml", "[server\nport = 1\n")
    assert config_error(broken, env={}).startswith(f"config file {broken}: ")


def test_as_dict_redacts_the_admin_token() -> None:
    harness.track_secret("s3cret-admin")
    settings = load_settings(None, env={"HOOKGATE_ADMIN_TOKEN": "s3cret-admin"})
    out = as_dict(settings)
    assert out["server"]["admin_token"] == "<redacted>"
    assert out["limits"]["app_rate"] == 10
    assert as_dict(load_settings(None, env={}))["server"]["admin_token"] == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", ("*",)),
        (["10.0.0.0/8", "127.0.0.1", "::1"], ("10.0.0.0/8", "127.0.0.1", "::1")),
    ],
)
def test_forwarded_allow_ips_takes_star_or_addresses(value: object, expected: tuple[str]) -> None:
    settings = load_settings(None, env={}, server={"forwarded_allow_ips": value})
    assert settings.server.forwarded_allow_ips == expected


def test_forwarded_allow_ips_from_the_environment() -> None:
    env = {"HOOKGATE_SERVER_FORWARDED_ALLOW_IPS": "127.0.0.1,10.0.0.0/8"}
    assert load_settings(None, env=env).server.forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8")


def test_bad_proxy_address_and_tiny_header_bound_are_refused() -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips: 'proxy' is not"):
        load_settings(None, env={}, server={"forwarded_allow_ips": ["proxy"]})
    with pytest.raises(ConfigError, match="max_header_bytes must be >= 1024"):
        load_settings(None, env={}, ingest={"max_header_bytes": 100})


def test_allowed_networks_from_toml_and_environment_and_bad_entries_refused() -> None:
    settings = load_settings(None, env={}, delivery={"allowed_networks": ["10.1.2.0/24"]})
    assert settings.delivery.allowed_networks == ("10.1.2.0/24",)
    env = {"HOOKGATE_DELIVERY_ALLOWED_NETWORKS": "10.1.2.0/24,fd00::/8"}
    assert load_settings(None, env=env).delivery.allowed_networks == ("10.1.2.0/24", "fd00::/8")
    with pytest.raises(ConfigError, match=r"delivery\.allowed_networks: 'intranet' is not"):
        load_settings(None, env={}, delivery={"allowed_networks": ["intranet"]})

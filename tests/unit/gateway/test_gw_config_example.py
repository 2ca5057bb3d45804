"""config.example.toml documents every setting with its default, and loads as-is."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from gateway.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def test_every_setting_is_in_the_example_with_its_default() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        documented = example.get(section.name)
        assert documented is not None, f"[{section.name}] missing from config.example.toml"
        values = getattr(defaults, section.name)
        for key in dataclasses.fields(values):
            assert key.name in documented, f"{section.name}.{key.name} is not documented"
            default = getattr(values, key.name)
            shown = documented[key.name]
            if isinstance(default, tuple):
                shown = tuple(shown)
            assert shown == default, f"{section.name}.{key.name}: example {shown!r} != {default!r}"
        extra = set(documented) - {f.name for f in dataclasses.fields(values)}
        assert not extra, f"[{section.name}] documents unknown keys {extra}"
    assert set(example) == {f.name for f in dataclasses.fields(Settings)}


def test_example_file_loads_to_the_defaults() -> None:
    assert load_settings(EXAMPLE, env={}) == Settings()

"""Turning HTML form fields into the values the record modules validate.

A blank field means "not given"; numbers and JSON are parsed here, and a value that does
not parse is an `InvalidInput` naming the field, shown on the page as any other."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import FormData

from gateway.errors import InvalidInput


def text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def number(form: FormData, name: str, *, integer: bool = False) -> float | int | None:
    raw = text(form, name)
    if raw is None:
        return None
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidInput(name, f"must be {kind}") from None


def json_value(form: FormData, name: str) -> Any:
    raw = text(form, name)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(name, f"is not valid JSON: {exc}") from None


def words(form: FormData, name: str) -> list[str]:
    raw = text(form, name) or ""
    return [w.strip() for w in raw.replace("\n", ",").split(",") if w.strip()]


def json_text(value: Any) -> str:
    """A JSON value as a form (or page) shows it: indented; "" for none."""
    return "" if value is None else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()

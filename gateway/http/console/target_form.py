"""The console's webhook-target form: its fields turned into the body the API takes
(`POST`/`PATCH /v1/webhook-targets`), and a target turned back into the fields' text.

Validation stays in `gateway.records.targets`, so a bad value gets the API's own message:
text is only converted to the JSON type the API would receive (a number, a list of
seconds, parsed JSON), and text that does not convert is passed on as it is for the API to
refuse. A blank field means what leaving the key out of a create means, also on edit, where
the form shows (and sends) every field: blank `retry` is "standard", blank `disable_after`
3, blank `reenable_after` 10m, blank `ordering` unordered, blank `ordering_key` none.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from gateway.errors import InvalidInput
from gateway.http.console import forms
from gateway.models import DISABLE_AFTER_DEFAULT, WebhookTarget

FIELDS = (
    "url",
    "events",
    "filter",
    "description",
    "retry",
    "disable_after",
    "reenable_after",
    "rate",
    "burst",
    "ordering",
    "ordering_key",
    "secret",
    "status",
)
NEVER = "never"  # `disable_after` spelled in the form for the API's null


def target_body(form: FormData, *, editing: bool) -> dict[str, Any]:
    """The API body for a submitted form (create, or with `editing` a PATCH of every field)."""
    body: dict[str, Any] = {
        "url": forms.text(form, "url"),
        "events": forms.words(form, "events"),
        "filter": forms.json_value(form, "filter"),
        "description": forms.text(form, "description") or "",
        "retry": _retry(form),
        "disable_after": _disable_after(forms.text(form, "disable_after")),
        "reenable_after": forms.text(form, "reenable_after"),
        # blank: unlimited, and the default burst (the form always says both)
        "rate": _number(forms.text(form, "rate"), float),
        "burst": _number(forms.text(form, "burst"), int),
        "ordering": forms.text(form, "ordering"),
        "ordering_key": forms.json_value(form, "ordering_key"),
    }
    secret = forms.text(form, "secret")
    if secret is not None or not editing:
        body["secret"] = secret  # create: blank generates one; edit: blank keeps the one set
    if editing:
        body["status"] = "active" if form.get("status") == "active" else "disabled"
    return body


def _number(raw: str | None, kind: type[int] | type[float]) -> Any:
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        return raw  # the API says what a number here must be


def _retry(form: FormData) -> Any:
    """ "none", "standard", or delays in seconds: "5, 30, 300" or the JSON list."""
    raw = forms.text(form, "retry")
    if raw is None:
        return None
    if raw.startswith("["):
        return forms.json_value(form, "retry")
    try:
        return [float(d) for d in raw.replace(",", " ").split()]
    except ValueError:
        return raw  # a policy name, or not a policy: the API decides


def _disable_after(raw: str | None) -> Any:
    if raw is None:
        return DISABLE_AFTER_DEFAULT
    if raw.lower() == NEVER:
        return None
    return _number(raw, int)


def error_shown(exc: InvalidInput) -> dict[str, str | None]:
    """The error as the form shows it: beside its field, or above the form for a field
    the form does not have."""
    field = exc.field if exc.field in FIELDS else None
    return {"field": field, "message": str(exc)}


def submitted_values(form: FormData) -> dict[str, str]:
    """The text typed, to show again beside an error; never the secret."""
    return {
        name: value
        for name in FIELDS
        if name != "secret" and isinstance(value := form.get(name), str)
    }


def target_values(target: WebhookTarget) -> dict[str, str]:
    """Each field's text for `target`: what the edit form shows, and the page too."""
    return {
        "url": target.url,
        "events": ", ".join(target.events),
        "filter": forms.json_text(target.filter),
        "description": target.description,
        "retry": target.retry
        if isinstance(target.retry, str)
        else ", ".join(_seconds_text(d) for d in target.retry),
        "disable_after": NEVER if target.disable_after is None else str(target.disable_after),
        "reenable_after": duration_text(target.reenable_after),
        "rate": "" if target.rate is None else str(target.rate),
        "burst": "" if target.burst is None else str(target.burst),
        "ordering": target.ordering or "",
        "ordering_key": forms.json_text(target.ordering_key),
        "status": target.status,
    }


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)


def duration_text(seconds: float) -> str:
    """`seconds` in the largest unit that holds it exactly, as `parse_duration` reads it
    back: 600.0 is "10m", 90.0 "90s"."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{_seconds_text(seconds)}s"

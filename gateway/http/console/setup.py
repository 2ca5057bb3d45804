"""Console pages for what an operator sets up: apps, webhook targets and the rule set
(with the rule tester). They call the record modules and the admin operations the API
calls (`app_records`, `target_records`, `send_test_event`, `dry_run`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import InvalidInput, NotFound
from gateway.http import signatures as inbound_signatures
from gateway.http.admin.rules import error_json
from gateway.http.admin.targets import send_test_event
from gateway.http.console import forms, target_form
from gateway.http.console.pages import _form, _gw, page, render
from gateway.models import App, WebhookTarget
from gateway.records import apps as app_records
from gateway.records import targets as target_records
from gateway.records.shapes import payload_of, target_json
from gateway.rulesets.dryrun import dry_run, secret_lookup


async def _app(request: Request) -> App:
    app = await _gw(request).store.get_app(request.path_params["app_id"])
    if app is None:
        raise NotFound(f"no app with id {request.path_params['app_id']}")
    return app


async def _target(request: Request) -> WebhookTarget:
    target = await _gw(request).store.get_target(request.path_params["target_id"])
    if target is None:
        raise NotFound(f"no webhook target with id {request.path_params['target_id']}")
    return target


# apps


@page
async def apps(request: Request) -> Response:
    gw = _gw(request)
    listed = [app_records.app_json(a, gw.settings) for a in await gw.store.list_apps()]
    return render(request, "apps.html", apps=listed, schemes=inbound_signatures.SCHEMES)


@page
async def create_app(request: Request) -> Response:
    """Create an app and show its event URL and token, this once."""
    gw = _gw(request)
    form = await _form(request)
    app, token = await app_records.create_app(
        gw.store,
        forms.text(form, "name"),
        rate=forms.number(form, "rate"),
        burst=forms.number(form, "burst", integer=True),
        schema=forms.json_value(form, "schema"),
        signing_secret=forms.text(form, "signing_secret"),
        signature_scheme=forms.text(form, "signature_scheme"),
    )
    await gw.apps.refresh()
    return render(
        request,
        "app_token.html",
        201,
        app=app,
        url=app_records.event_url(gw.settings, token),
        token=token,
    )


@page
async def app_page(request: Request) -> Response:
    gw = _gw(request)
    app = await _app(request)
    return render(
        request,
        "app.html",
        app=app,
        record=app_records.app_json(app, gw.settings),
        schema=forms.json_text(app.schema),
        schemes=inbound_signatures.SCHEMES,
    )


@page
async def update_app(request: Request) -> Response:
    gw = _gw(request)
    form = await _form(request)
    changes: dict[str, Any] = {
        "enabled": form.get("enabled") == "on",
        "rate": forms.number(form, "rate"),
        "burst": forms.number(form, "burst", integer=True),
        "schema": forms.json_value(form, "schema"),
    }
    scheme = forms.text(form, "signature_scheme")
    secret = forms.text(form, "signing_secret")
    if secret is not None:
        changes["signing_secret"] = secret
    if scheme is not None:
        changes["signature_scheme"] = scheme
    app = await app_records.update_app(gw.store, await _app(request), changes)
    await gw.apps.refresh()
    return RedirectResponse(f"/console/apps/{app.id}", status_code=303)


@page
async def rotate_app(request: Request) -> Response:
    gw = _gw(request)
    form = await _form(request)
    grace = forms.number(form, "grace_seconds") or 0
    app, token = await app_records.rotate_token(gw.store, await _app(request), grace)
    await gw.apps.refresh()
    return render(
        request,
        "app_token.html",
        app=app,
        url=app_records.event_url(gw.settings, token),
        token=token,
        rotated=True,
    )


# webhook targets


async def _targets_page(
    request: Request, status: int = 200, form: Any = None, error: InvalidInput | None = None
) -> Response:
    return render(
        request,
        "targets.html",
        status,
        targets=await _gw(request).store.list_targets(),
        values=target_form.submitted_values(form) if form is not None else {},
        error=target_form.error_shown(error) if error is not None else None,
    )


def _target_view(
    request: Request,
    target: WebhookTarget,
    status: int = 200,
    *,
    form: Any = None,
    error: InvalidInput | None = None,
    **extra: Any,
) -> Response:
    """The target's page: its settings, and the edit form (showing what was typed and the
    error beside its field when a save was refused)."""
    shown = target_form.target_values(target)
    return render(
        request,
        "target.html",
        status,
        target=target,
        record=target_json(target),
        shown=shown,
        values=target_form.submitted_values(form) if form is not None else shown,
        error=target_form.error_shown(error) if error is not None else None,
        **extra,
    )


@page
async def targets(request: Request) -> Response:
    return await _targets_page(request)


@page
async def create_target(request: Request) -> Response:
    """Create a target; a value the API refuses shows the form again, with its message."""
    gw = _gw(request)
    form = await _form(request)
    try:
        body = target_form.target_body(form, editing=False)
        target = await target_records.create_target(body, gw.settings, gw.logic)
    except InvalidInput as exc:
        return await _targets_page(request, 422, form, exc)
    await gw.store.create_target(target)
    await gw.rules.refresh_targets()
    return _target_view(request, target, 201, secret=target.secret, new=True)


@page
async def target_page(request: Request) -> Response:
    return _target_view(request, await _target(request))


@page
async def update_target(request: Request) -> Response:
    """Save every field of the form (as a PATCH naming them all); a new secret is shown
    once, as on create."""
    gw = _gw(request)
    form = await _form(request)
    before = await _target(request)
    try:
        body = target_form.target_body(form, editing=True)
        target = await target_records.update_target(before, body, gw.settings, gw.logic)
    except InvalidInput as exc:
        return _target_view(request, before, 422, form=form, error=exc)
    target = await target_records.save_update(gw.store, before, target, status_given=False)
    await gw.rules.refresh_targets()
    if target.status == "active" and before.status != "active":
        gw.wake_delivery()  # what it held is due now
    if "secret" in body:
        return _target_view(request, target, secret=target.secret)
    return RedirectResponse(f"/console/targets/{target.id}", status_code=303)


@page
async def test_target(request: Request) -> Response:
    target = await _target(request)
    delivery, status, attempt = await send_test_event(_gw(request), target)
    test = {"delivery": delivery, "status": status, "attempt": attempt}
    return _target_view(request, target, test=test)


@page
async def delete_target(request: Request) -> Response:
    """GET: ask for confirmation; POST with `confirm`: delete."""
    gw = _gw(request)
    target = await _target(request)
    if request.method == "GET" or (await _form(request)).get("confirm") != "yes":
        return render(request, "confirm_delete.html", target=target)
    await gw.store.delete_target(target.id)
    await gw.rules.refresh_targets()
    return RedirectResponse("/console/targets", status_code=303)


# rules


@page
async def rules_page(request: Request) -> Response:
    gw = _gw(request)
    by_file: dict[str, list[Any]] = {}
    for rule in gw.rules.current.rules:
        by_file.setdefault(rule.source or "webhook targets", []).append(rule)
    result = None
    event_text = ""
    app_name = ""
    if request.method == "POST":
        form = await _form(request)
        app_name = forms.text(form, "app") or ""
        event_id = forms.text(form, "event_id")
        if event_id:
            stored = await gw.store.get_event(event_id)
            if stored is None:
                raise NotFound(f"no event with id {event_id}")
            event = payload_of(stored)
            app_name = app_name or gw.app_name(stored.app_id)
        else:
            event = forms.json_value(form, "event")
        if not isinstance(event, dict):
            raise InvalidInput("event", "must be a JSON object (the event to test)")
        event_text = forms.json_text(event)
        result = dry_run(gw.rules.current, app_name, event, secret_lookup(gw.rules.targets))
        for req in result["requests"]:
            req["pretty"] = forms.json_text(req)
    return render(
        request,
        "rules.html",
        state=gw.rules,
        by_file=by_file,
        errors=[error_json(e) for e in gw.rules.errors],
        apps=await gw.store.list_apps(),
        result=result,
        event_text=event_text,
        app_name=app_name,
    )


routes = [
    Route("/apps", apps, methods=["GET"]),
    Route("/apps", create_app, methods=["POST"]),
    Route("/apps/{app_id}", app_page, methods=["GET"]),
    Route("/apps/{app_id}", update_app, methods=["POST"]),
    Route("/apps/{app_id}/rotate", rotate_app, methods=["POST"]),
    Route("/targets", targets, methods=["GET"]),
    Route("/targets", create_target, methods=["POST"]),
    Route("/targets/{target_id}", target_page, methods=["GET"]),
    Route("/targets/{target_id}", update_target, methods=["POST"]),
    Route("/targets/{target_id}/test", test_target, methods=["POST"]),
    Route("/targets/{target_id}/delete", delete_target, methods=["GET", "POST"]),
    Route("/rules", rules_page, methods=["GET", "POST"]),
]

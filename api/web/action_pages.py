"""An action's generated form, its preview (a dry run: the plan, nothing started) and its launch
(source ``UI``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from api.errors import RateLimited
from api.services.runs import RunService
from api.web.core import Page, page, see_other
from api.web.forms import Field, fields_of, inputs_from
from catalog.errors import Forbidden, Invalid, NotFound
from catalog.models import Action
from catalog.runs import actions as action_defs
from catalog.runs.service import RunRequest, check_target


def _action(ctx: Page) -> Action:
    action = action_defs.get_action(ctx.db, ctx.request.path_params["action"])
    if not action_defs.may_see(ctx.db, action, ctx.who):
        raise NotFound(f"action '{action.identifier}' not found")
    return action


@page("/actions/{action}/launch")
def launch_form(ctx: Page) -> Response:
    action = _action(ctx)
    entity = ctx.param("entity") or None
    if not ctx.who.may_write:
        raise Forbidden("viewers can read but not launch actions")
    check_target(ctx.db, action, entity, ctx.who)
    schema = action.definition.get("user_inputs") or {}
    return _render(ctx, action, entity, fields_of(ctx.db, schema, ctx.who), None, 200)


@page("/actions/{action}/launch", ("POST",))
def launch(ctx: Page) -> Response:
    return _submit(ctx, preview=False)


@page("/actions/{action}/preview", ("POST",))
def preview(ctx: Page) -> Response:
    """The form's Preview button: the launch's checks and the plan shown under the form (the
    filled-in fields kept, secret ones left empty); nothing is started or written."""
    return _submit(ctx, preview=True)


def _submit(ctx: Page, *, preview: bool) -> Response:
    action = _action(ctx)
    entity = ctx.field("entity") or None
    schema = action.definition.get("user_inputs") or {}
    inputs = inputs_from(schema, ctx.form)
    service = RunService(ctx.db, ctx.request.app.state.temporal, ctx.settings)
    body = RunRequest(entity=entity, inputs=inputs, source="UI")
    shown = {k: v for k, v in inputs.items() if not schema.get("properties", {}).get(k, {}).get("secret")}
    try:
        # A launch (and a preview, the API's dry run) counts against the token's launch budget.
        ctx.charge("launches")
    except RateLimited as exc:
        fields = fields_of(ctx.db, schema, ctx.who, shown)
        response = _render(ctx, action, entity, fields, f"Nothing was launched: {exc.message}.", 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    try:
        if preview:
            plan = service.dry_run(action.identifier, body, ctx.user, ctx.who, source_header="UI")
            fields = fields_of(ctx.db, schema, ctx.who, shown)
            return _render(ctx, action, entity, fields, None, 200, plan=plan)
        launched = service.launch(action.identifier, body, ctx.user, ctx.who, source_header="UI")
    except Invalid as exc:
        ctx.db.rollback()
        fields = fields_of(ctx.db, schema, ctx.who, shown)
        by_name = {f.name: f for f in fields}
        general = []
        for detail in exc.details:
            name = detail.pointer.removeprefix("/inputs/").split("/")[0]
            if detail.pointer.startswith("/inputs/") and name in by_name:
                by_name[name].error = detail.message
            else:
                general.append(f"{detail.pointer}: {detail.message}")
        return _render(ctx, action, entity, fields, "; ".join(general) or None, 422)
    return see_other(f"/runs/{launched.run.id}")


def _render(
    ctx: Page,
    action: Action,
    entity: str | None,
    fields: list[Field],
    error: str | None,
    status: int,
    plan: dict[str, Any] | None = None,
) -> Response:
    return ctx.render(
        "launch.html",
        status=status,
        title=action.definition.get("title") or action.identifier,
        action=action,
        entity=entity,
        fields=fields,
        error=error,
        plan=plan,
    )


ROUTES = [launch_form, launch, preview]

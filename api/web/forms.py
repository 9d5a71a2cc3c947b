"""An action's form, generated from its ``user_inputs`` JSON Schema, and the inputs read back.

Fields carry the browser-side checks (required, pattern, min/max, maxLength) so mistakes show
at once, but the launch checks everything again: a value the browser let through that the API
refuses comes back as a 422 shown next to its field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from catalog.entities.search import readable_condition
from catalog.identity.permissions import Principal
from catalog.models import Entity

PICKER_LIMIT = 500


@dataclass
class Field:
    name: str
    label: str
    widget: str  # text number checkbox select multiselect textarea json password entity
    description: str = ""
    required: bool = False
    value: Any = None
    options: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def fields_of(
    session: Session, schema: dict[str, Any], who: Principal, sent: dict[str, Any] | None = None
) -> list[Field]:
    """One field per input, in the schema's order, filled with what was sent or the default
    (never a secret: a re-rendered form asks for it again)."""
    required = set(schema.get("required", []))
    found = []
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type", "string")
        f = Field(
            name=name,
            label=spec.get("title") or name,
            widget="text",
            description=spec.get("description", ""),
            required=name in required,
            value=(sent or {}).get(name, spec.get("default")),
        )
        if spec.get("secret"):
            f.widget, f.value = "password", None
        elif "enum" in spec:
            f.widget, f.options = "select", [str(o) for o in spec["enum"]]
        elif kind == "boolean":
            f.widget = "checkbox"
        elif kind in ("integer", "number"):
            f.widget = "number"
            f.attrs = {"step": "1" if kind == "integer" else "any"}
            f.attrs |= {
                attr: spec[key] for key, attr in (("minimum", "min"), ("maximum", "max")) if key in spec
            }
        elif kind == "array" and "enum" in spec.get("items", {}):
            f.widget, f.options = "multiselect", [str(o) for o in spec["items"]["enum"]]
        elif kind == "array":
            f.widget = "textarea"
            f.description = (f.description + " One value per line.").strip()
            if isinstance(f.value, list):
                f.value = "\n".join(str(v) for v in f.value)
        elif kind == "object":
            f.widget = "json"
            if f.value is not None and not isinstance(f.value, str):
                f.value = json.dumps(f.value, indent=2)
        elif spec.get("format") == "entity":
            f.widget, f.options = "entity", _entities(session, spec.get("blueprint", ""), who)
        elif spec.get("format") in ("date", "date-time"):
            f.widget = "date" if spec["format"] == "date" else "text"
        if kind == "string":
            f.attrs |= {
                attr: spec[key]
                for key, attr in (
                    ("pattern", "data-pattern"),  # checked by gantry.js as the API checks it
                    ("maxLength", "maxlength"),
                    ("minLength", "minlength"),
                )
                if key in spec and f.widget not in ("select",)
            }
        found.append(f)
    return found


def _entities(session: Session, blueprint: str, who: Principal) -> list[str]:
    """The picker's choices: the blueprint's entities the caller may read."""
    stmt = sa.select(Entity.identifier).where(Entity.blueprint == blueprint)
    readable = readable_condition(session, who, session.get_bind().dialect.name)
    if readable is not None:
        stmt = stmt.where(readable)
    return list(session.scalars(stmt.order_by(Entity.identifier).limit(PICKER_LIMIT)))


def inputs_from(schema: dict[str, Any], form: dict[str, list[str]]) -> dict[str, Any]:
    """The submitted form as the action's inputs. An empty optional field is left out (its
    default applies); a value that does not parse is passed on as typed so the launch's own
    check names it."""
    inputs: dict[str, Any] = {}
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type", "string")
        values = form.get(name, [])
        raw = values[-1] if values else ""
        if kind == "boolean":
            inputs[name] = raw in ("on", "true", "1")
            continue
        if kind == "array" and "enum" in spec.get("items", {}):
            if values:
                inputs[name] = values
            continue
        if raw == "":
            continue
        if kind == "integer":
            inputs[name] = _number(raw, int)
        elif kind == "number":
            inputs[name] = _number(raw, float)
        elif kind == "array":
            inputs[name] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif kind == "object":
            try:
                inputs[name] = json.loads(raw)
            except ValueError:
                inputs[name] = raw
        else:
            inputs[name] = raw
    return inputs


def _number(raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            return raw
        return int(value) if kind is int and value.is_integer() else value

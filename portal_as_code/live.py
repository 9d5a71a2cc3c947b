"""Reading and writing the live portal through the API, as the configuration model sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from cli import ApiError, Gantry
from portal_as_code.model import BUILTIN_USERS, ENTITY, KINDS, Kind, Spec


def api_error(response: httpx.Response) -> ApiError:
    """The API's error answer as the CLI's :class:`ApiError` (its message and details)."""
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error.get("message", ""), error.get("details"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiError(response.status_code, response.text[:500] or response.reason_phrase)


def fetch(api: Gantry, path: str) -> tuple[Spec | None, str | None]:
    """One object and its ETag; (None, None) when it does not exist."""
    response = api.http.get(path)
    if response.status_code == 404:
        return None, None
    if response.status_code >= 400:
        raise api_error(response)
    return response.json(), response.headers.get("ETag")


def write(
    api: Gantry,
    method: str,
    path: str,
    body: Spec,
    *,
    dry_run: bool = False,
    if_match: str | None = None,
) -> Spec:
    headers = {"If-Match": if_match} if if_match else {}
    params = {"dry_run": "true"} if dry_run else {}
    response = api.http.request(method, path, json=body, params=params, headers=headers)
    if response.status_code >= 400:
        raise api_error(response)
    return dict(response.json()) if response.content else {}


def _listed(api: Gantry, path: str) -> Iterator[Spec]:
    try:
        yield from api.pages("GET", path)
    except ApiError as exc:
        if exc.status != 404:  # a route this API does not have: nothing of that kind
            raise


def live_objects(api: Gantry, kinds: Any = None) -> dict[tuple[str, str], Spec]:
    """Every live configuration object of ``kinds`` (default: all), by (kind, key), as the API
    answers it. The bootstrap admin and the service principal are not configuration."""
    wanted = set(kinds or KINDS)
    found: dict[tuple[str, str], Spec] = {}
    blueprints = list(_listed(api, "/v1/blueprints"))
    for name in wanted:
        kind = KINDS[name]
        if name == "Blueprint":
            items: list[Spec] = blueprints
        elif kind.scoped_by:
            items = [
                {**item, "blueprint": bp["identifier"]}
                for bp in blueprints
                for item in _listed(api, kind.collection_of({"blueprint": bp["identifier"]}))
            ]
        else:
            items = list(_listed(api, kind.collection))
        for item in items:
            if name == "User" and item.get("identifier") in BUILTIN_USERS:
                continue
            found[(name, kind.key(item))] = item
    return found


def computed_properties(blueprint: Spec) -> set[str]:
    """Properties the catalog computes: never part of an entity's spec."""
    return set(blueprint.get("mirror_properties") or {}) | set(blueprint.get("aggregation_properties") or {})


def entity_spec(live: Spec, computed: set[str]) -> Spec:
    """An entity as its document: no stamps, scorecards or computed properties."""
    spec: Spec = {"blueprint": live["blueprint"], "identifier": live["identifier"]}
    if live.get("title") is not None:
        spec["title"] = live["title"]
    if live.get("team"):
        spec["team"] = live["team"]
    properties = {k: v for k, v in (live.get("properties") or {}).items() if k not in computed}
    if properties:
        spec["properties"] = properties
    relations = {k: v for k, v in (live.get("relations") or {}).items() if v not in (None, [])}
    if relations:
        spec["relations"] = relations
    return spec


def kind_of(name: str) -> Kind:
    if name == ENTITY or name not in KINDS:
        raise ValueError(f"{name} is not a configuration kind; use one of {', '.join(KINDS)}")
    return KINDS[name]

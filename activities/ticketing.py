"""Jira step kinds: ``jira.create_issue``, ``jira.transition``, ``jira.comment`` (REST API v2).

v2 works on Jira Cloud, Server and Data Center and takes plain-text descriptions. Each step acts
once per run step: ``create_issue`` labels its issue ``gantry-<idempotency key>`` and searches
for that label first; ``transition`` treats "already in the target status" as done;
``comment`` stores the key as a hidden comment property and, on a retry, looks for it first.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from temporalio import activity

from activities.errors import bad_params, request, send, vendor_error
from activities.urls import segment
from contracts.steps import Link, StepInput, StepResult

API = "/rest/api/2"
_COMMENT_PROPERTY = "gantry"


def gantry_label(idempotency_key: str) -> str:
    """A Jira label (no spaces, at most 255 chars) naming one run step."""
    return "gantry-" + re.sub(r"[^A-Za-z0-9_.-]", "-", idempotency_key)[:240]


class Jira:
    """The client has base_url=the Jira URL and basic auth user:API token."""

    def __init__(
        self, client: httpx.AsyncClient, browse_url: str | None = None, index_lag: float = 2.0
    ) -> None:
        self._client = client
        # Jira's search index trails writes by a moment: a retry searches again after this long.
        self._index_lag = index_lag
        self._browse = (browse_url or str(client.base_url)).rstrip("/")
        # Jira Cloud replaced /search by /search/jql (the old one answers 410); Server has only /search.
        self._search_path: str | None = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await send(self._client, "Jira", method, f"{API}{path}", **kwargs)
        return response.json() if response.content else None

    def _issue_outputs(self, issue: dict[str, Any]) -> StepResult:
        url = f"{self._browse}/browse/{issue['key']}"
        return StepResult(
            outputs={"key": issue["key"], "id": str(issue["id"]), "url": url},
            links=[Link(f"Jira {issue['key']}", url)],
        )

    @activity.defn(name="jira.create_issue")
    async def create_issue(self, step: StepInput) -> StepResult:
        params = step.params
        for name in ("project", "summary"):
            if not params.get(name):
                raise bad_params(f"jira.create_issue needs {name}")
        label = gantry_label(step.idempotency_key)
        jql = f'labels = "{label}" ORDER BY created ASC'
        found = await self.search(jql)
        if not found and activity.info().attempt > 1 and self._index_lag:
            await asyncio.sleep(self._index_lag)
            found = await self.search(jql)
        if found:
            result = self._issue_outputs(found[0])
            result.log.append(f"found {found[0]['key']} created by an earlier attempt")
            return result
        fields: dict[str, Any] = {
            "project": {"key": params["project"]},
            "issuetype": {"name": params.get("issue_type") or "Task"},
            "summary": params["summary"],
            **(params.get("fields") or {}),
        }
        # The run step's label must survive labels given in ``fields`` too: it is how a retry finds the issue.
        fields["labels"] = [*dict.fromkeys([*(params.get("labels") or []), *fields.get("labels", []), label])]
        if params.get("description"):
            fields["description"] = params["description"]
        issue = await self._call("POST", "/issue", json={"fields": fields})
        result = self._issue_outputs(issue)
        result.log.append(f"created {issue['key']}")
        return result

    async def search(self, jql: str) -> list[dict[str, Any]]:
        query: dict[str, str | int] = {"jql": jql, "fields": "summary,status,labels", "maxResults": 10}
        for path in [self._search_path] if self._search_path else ["/search/jql", "/search"]:
            response = await request(self._client, "Jira", "GET", f"{API}{path}", params=query)
            if response.status_code in (404, 410) and not self._search_path:
                continue
            if not response.is_success:
                raise vendor_error("Jira", response)
            self._search_path = path
            return list(response.json().get("issues") or [])
        raise vendor_error("Jira", response)

    @activity.defn(name="jira.transition")
    async def transition(self, step: StepInput) -> StepResult:
        issue = _issue_key(step.params.get("issue"))
        wanted = str(step.params.get("transition") or "").strip()
        if not wanted:
            raise bad_params("jira.transition needs a transition (name or id)")
        available = (await self._call("GET", f"/issue/{issue}/transitions"))["transitions"]
        match = next(
            (t for t in available if wanted == str(t["id"]) or wanted.lower() == t["name"].lower()), None
        ) or next(
            (t for t in available if wanted.lower() == (t.get("to") or {}).get("name", "").lower()), None
        )
        if match is None:
            current = (await self._call("GET", f"/issue/{issue}", params={"fields": "status"}))["fields"][
                "status"
            ]
            if current["name"].lower() == wanted.lower():
                # A retry after the transition went through: the issue is already there.
                return StepResult(
                    outputs={"key": issue, "status": current["name"]},
                    log=[f"{issue} already {current['name']}"],
                )
            names = ", ".join(f"{t['name']} ({t['id']})" for t in available) or "none"
            raise bad_params(f"Jira issue {issue} has no transition {wanted!r}; available: {names}")
        body: dict[str, Any] = {"transition": {"id": str(match["id"])}}
        if step.params.get("fields"):
            body["fields"] = step.params["fields"]
        await self._call("POST", f"/issue/{issue}/transitions", json=body)
        status = (match.get("to") or {}).get("name") or match["name"]
        url = f"{self._browse}/browse/{issue}"
        return StepResult(
            outputs={"key": issue, "status": status, "url": url},
            links=[Link(f"Jira {issue}", url)],
            log=[f"{issue}: {match['name']} -> {status}"],
        )

    @activity.defn(name="jira.comment")
    async def comment(self, step: StepInput) -> StepResult:
        issue = _issue_key(step.params.get("issue"))
        if not step.params.get("body"):
            raise bad_params("jira.comment needs a body")
        comment = (
            await self._find_comment(issue, step.idempotency_key) if activity.info().attempt > 1 else None
        )
        if comment is None:
            property_ = {"key": _COMMENT_PROPERTY, "value": {"idempotency_key": step.idempotency_key}}
            comment = await self._call(
                "POST",
                f"/issue/{issue}/comment",
                json={"body": step.params["body"], "properties": [property_]},
            )
        url = f"{self._browse}/browse/{issue}?focusedCommentId={comment['id']}"
        return StepResult(
            outputs={"key": issue, "comment_id": str(comment["id"]), "url": url},
            links=[Link(f"Jira {issue} comment", url)],
        )

    async def _find_comment(self, issue: str, key: str) -> dict[str, Any] | None:
        page = await self._call(
            "GET",
            f"/issue/{issue}/comment",
            params={"expand": "properties", "orderBy": "-created", "maxResults": 50},
        )
        for comment in page.get("comments") or []:
            for prop in comment.get("properties") or []:
                if (
                    prop.get("key") == _COMMENT_PROPERTY
                    and (prop.get("value") or {}).get("idempotency_key") == key
                ):
                    return dict(comment)
        return None


def _issue_key(issue: Any) -> str:
    text = str(issue or "").strip()
    if not text:
        raise bad_params("a Jira step needs an issue (key or id)")
    return segment(text.rsplit("/browse/", 1)[-1], "Jira issue")

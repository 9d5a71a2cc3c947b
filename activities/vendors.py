"""Builds each integration from settings and lists the activities the worker registers.

An integration is built only when its settings are there (a token, a URL); ``http.request`` is
always there. The step kinds of a vendor that is not configured are registered too, as
activities that fail at once naming the variables to set. Each vendor gets one HTTP client with its base URL and auth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from activities.ci import GitHubActions, GitLab, Jenkins
from activities.context import not_configured, with_context
from activities.http import HostPolicy, Webhooks
from activities.ticketing import Jira
from catalog.runs.step_kinds import STEP_KINDS, WORKFLOW_KINDS, vendor_of
from config import Settings

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

TIMEOUT = httpx.Timeout(30.0)


def build_integrations(settings: Settings) -> list[object]:
    """Every integration whose settings make sense."""
    integrations: list[object] = [
        Webhooks(
            httpx.AsyncClient(timeout=TIMEOUT),
            settings.secret("webhook_secret"),
            HostPolicy.parse(settings.http_allowed_hosts),
        )
    ]
    if token := settings.secret("github_token"):
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        integrations.append(
            GitHubActions(
                _client(settings.github_api_url, headers=headers), poll_interval=settings.vendor_poll_interval
            )
        )
    if token := settings.secret("gitlab_token"):
        integrations.append(
            GitLab(
                _client(settings.gitlab_url, headers={"PRIVATE-TOKEN": token}),
                poll_interval=settings.vendor_poll_interval,
            )
        )
    if settings.jenkins_url and settings.jenkins_user and (token := settings.secret("jenkins_token")):
        integrations.append(
            Jenkins(
                _client(settings.jenkins_url, auth=(settings.jenkins_user, token)),
                poll_interval=settings.vendor_poll_interval,
            )
        )
    if settings.jira_url and settings.jira_user and (token := settings.secret("jira_token")):
        integrations.append(Jira(_client(settings.jira_url, auth=(settings.jira_user, token))))
    if token := settings.secret("slack_bot_token"):
        from slack_sdk.web.async_client import AsyncWebClient

        from activities.slack import SlackMessages

        integrations.append(
            SlackMessages(AsyncWebClient(token=token, base_url=_slash(settings.slack_api_url)))
        )
    from activities.cloud import CloudFormation, aws_region, cloudformation_client

    if aws_region():
        integrations.append(
            CloudFormation(cloudformation_client(), poll_interval=settings.vendor_poll_interval)
        )
    return integrations


def build_activities(settings: Settings) -> list[Callable[..., Any]]:
    """Every activity the worker registers: the catalog's own (``catalog.*``, ``gantry.*``) and
    every step kind — a configured vendor's wrapped so the run's marked secret placeholders
    resolve just before the vendor call, an unconfigured one failing at once with what to set.
    Step kinds' failures carry their context (:mod:`activities.context`)."""
    from activities.catalog import CatalogActivities, GantryApi, with_secrets

    api = GantryApi.from_settings(settings)
    activities = _activity_methods(CatalogActivities(api))
    for integration in build_integrations(settings):
        activities += [with_secrets(method, api) for method in _activity_methods(integration)]
    activities += unconfigured_steps({_name(a) for a in activities})
    activities = [with_context(a) if _name(a) in STEP_KINDS else a for a in activities]
    # Not step kinds (no StepInput, no secrets): the approval gate's and the TTL timers' own,
    # registered always; without Slack they only log.
    from activities.slack_approvals import SlackApprovals
    from activities.slack_timers import SlackTimers

    slack = _slack_client(settings)
    activities += _activity_methods(SlackApprovals(slack, settings.api_url))
    return activities + _activity_methods(SlackTimers(slack))


def unconfigured_steps(registered: set[str]) -> list[Callable[..., Any]]:
    """An activity for each vendor step kind not in ``registered``: its vendor is not configured,
    and a run using it fails at once saying so (not with "not registered on this worker")."""
    stubs = []
    for uses in sorted(set(STEP_KINDS) - WORKFLOW_KINDS - registered):
        vendor = vendor_of(uses)
        if vendor is not None:
            stubs.append(not_configured(uses, vendor))
    return stubs


def _slack_client(settings: Settings) -> AsyncWebClient | None:
    """The client Slack's approvals and timer notices share, or None when Slack is not configured."""
    token = settings.secret("slack_bot_token")
    if not token:
        return None
    from slack_sdk.web.async_client import AsyncWebClient

    return AsyncWebClient(token=token, base_url=_slash(settings.slack_api_url))


def _name(fn: Callable[..., Any]) -> str:
    return str(fn.__temporal_activity_definition.name)  # type: ignore[attr-defined]


def _activity_methods(integration: object) -> list[Callable[..., Any]]:
    methods = (getattr(integration, name) for name in dir(integration) if not name.startswith("_"))
    return [m for m in methods if callable(m) and hasattr(m, "__temporal_activity_definition")]


def _client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, **kwargs)


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"

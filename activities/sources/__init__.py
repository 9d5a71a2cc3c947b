"""Data-source syncs, the worker's side: vendor pull clients and the sync's activities.

``build_source_activities(settings)`` builds a pull client for every vendor whose settings are
there (one HTTP client per vendor, with its base URL and credentials) and returns the
``sources.*`` activities; a source whose vendor is not configured fails its pulls at once,
naming the settings to set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from activities.sources.paging import SourceClient, VendorHttp
from config import Settings

TIMEOUT = httpx.Timeout(30.0)


def build_source_clients(settings: Settings) -> dict[str, SourceClient]:
    """A pull client per configured vendor, keyed by the data source kind."""
    from activities.sources.aws import AwsSource
    from activities.sources.files import FilesSource
    from activities.sources.github import GitHubSource
    from activities.sources.gitlab import GitLabSource
    from activities.sources.jira import JiraSource
    from activities.sources.pagerduty import PagerDutySource

    wait = settings.sources_max_rate_limit_wait
    clients: dict[str, SourceClient] = {"aws": AwsSource(aws_clients(settings.aws_endpoint_url))}
    if token := settings.secret("github_token"):
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        github = GitHubSource(VendorHttp(_client(settings.github_api_url, headers=headers), "GitHub", wait))
        clients["github"] = github
        clients["files"] = FilesSource(github)
    if token := settings.secret("gitlab_token"):
        http = VendorHttp(_client(settings.gitlab_url, headers={"PRIVATE-TOKEN": token}), "GitLab", wait)
        clients["gitlab"] = GitLabSource(http)
    if settings.jira_url and settings.jira_user and (token := settings.secret("jira_token")):
        http = VendorHttp(_client(settings.jira_url, auth=(settings.jira_user, token)), "Jira", wait)
        clients["jira"] = JiraSource(http)
    if token := settings.secret("pagerduty_token"):
        headers = {
            "Authorization": f"Token token={token}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }
        http = VendorHttp(_client(settings.pagerduty_api_url, headers=headers), "PagerDuty", wait)
        clients["pagerduty"] = PagerDutySource(http)
    if kubernetes := kubernetes_source(settings):
        clients["kubernetes"] = kubernetes
    return clients


def build_source_activities(settings: Settings) -> list[Callable[..., Any]]:
    from activities.catalog import GantryApi
    from activities.sources.sync import SourceActivities

    sources = SourceActivities(GantryApi.from_settings(settings), build_source_clients(settings))
    return [sources.open_sync, sources.load_source, sources.pull, sources.complete_sync]


def aws_clients(endpoint_url: str | None) -> Callable[[str, str], Any]:
    """boto3 clients by (service, region), made once each (they are thread-safe)."""
    import boto3

    made: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[service, region] = boto3.client(service, region_name=region, endpoint_url=endpoint_url)
        return made[service, region]

    return client


def kubernetes_source(settings: Settings) -> SourceClient | None:
    """The cluster of the kubeconfig setting, else the one the worker runs in, else None."""
    from kubernetes import config as kube_config

    from activities.sources.kubernetes import KubernetesSource

    if settings.kubernetes_kubeconfig is not None:
        path = str(settings.kubernetes_kubeconfig)
        api = kube_config.new_client_from_config(config_file=path, context=settings.kubernetes_context)
        _, active = kube_config.list_kube_config_contexts(config_file=path)
        return KubernetesSource(api, settings.kubernetes_context or str(active["name"]))
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        return None
    from kubernetes.client import ApiClient

    return KubernetesSource(ApiClient(), "in-cluster")


def _client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, **kwargs)

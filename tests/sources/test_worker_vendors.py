"""GitLab, Jira, PagerDuty and Kubernetes pulls, each through its fake to the fake catalog: every
resource kind pages to the end in the vendor's own paging, and the items that arrive are the
vendor's JSON (Kubernetes items carry the cluster name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from tests.fakes.gitlab_groups import FakeGitLabGroups
from tests.fakes.jira_search import FakeJiraSearch
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.sync_catalog import FakeSyncCatalog
from tests.sources.worker_fixtures import Env, open_record, pull, running, settings_for


@pytest.fixture(scope="module")
def gitlab_server() -> Iterator[FakeGitLabGroups]:
    yield from running(FakeGitLabGroups())


@pytest.fixture(scope="module")
def jira_server() -> Iterator[FakeJiraSearch]:
    yield from running(FakeJiraSearch())


@pytest.fixture(scope="module")
def pagerduty_server() -> Iterator[FakePagerDuty]:
    yield from running(FakePagerDuty())


@pytest.fixture(scope="module")
def kubernetes_server() -> Iterator[FakeKubernetes]:
    yield from running(FakeKubernetes())


@pytest.fixture
def gitlab(
    gitlab_server: FakeGitLabGroups, catalog: FakeSyncCatalog
) -> Iterator[tuple[FakeGitLabGroups, Any]]:
    gitlab_server.reset()
    open_record(catalog, "gl")
    yield (
        gitlab_server,
        settings_for(catalog, gitlab_token=FakeGitLabGroups.token, gitlab_url=gitlab_server.url),
    )


async def test_gitlab_projects_merge_requests_and_pipelines(
    gitlab: tuple[FakeGitLabGroups, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = gitlab
    projects = [fake.add_project(f"app-{n:03d}") for n in range(130)]
    for iid in range(1, 4):
        fake.add_merge_request(projects[0], iid)
    for pipeline_id in range(1, 121):
        fake.add_pipeline(projects[1], pipeline_id)
    fake.add_pipeline(projects[129], 999, status="failed")
    config = {"group": "platform"}
    result = await pull(Env(), settings, "gl", "gitlab", "project", config)
    assert [p["path_with_namespace"] for p in catalog.items("gl", "s1", 0)] == [
        f"platform/app-{n:03d}" for n in range(130)
    ]
    assert result.pages == 2 and fake.served == [("projects", 1), ("projects", 2)]
    await pull(Env(), settings, "gl", "gitlab", "merge-request", config, resource=1)
    assert [m["iid"] for m in catalog.items("gl", "s1", 1)] == [1, 2, 3]
    await pull(Env(), settings, "gl", "gitlab", "pipeline", config, resource=2)
    pipelines = catalog.items("gl", "s1", 2)
    assert [p["id"] for p in pipelines] == [*range(1, 121), 999]
    assert {p["project_id"] for p in pipelines} == {projects[1]["id"], projects[129]["id"]}
    assert all(r.headers["private-token"] == FakeGitLabGroups.token for r in fake.calls("GET"))


async def test_gitlab_rate_limit_is_waited_out(
    gitlab: tuple[FakeGitLabGroups, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = gitlab
    for n in range(150):
        fake.add_project(f"app-{n:03d}")
    fake.fail_page("projects", 2, 429, headers={"Retry-After": "1"})
    result = await pull(Env(), settings, "gl", "gitlab", "project", {"group": "platform"})
    assert result.items == 150 and len(catalog.items("gl", "s1")) == 150


@pytest.fixture
def jira(jira_server: FakeJiraSearch, catalog: FakeSyncCatalog) -> Iterator[tuple[FakeJiraSearch, Any]]:
    jira_server.reset()
    open_record(catalog, "jira")
    yield (
        jira_server,
        settings_for(
            catalog, jira_url=jira_server.url, jira_user=FakeJiraSearch.user, jira_token=FakeJiraSearch.token
        ),
    )


async def test_jira_projects_and_issues_of_the_selectors_jql(
    jira: tuple[FakeJiraSearch, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = jira
    for key in ("PAY", "OPS"):
        fake.add_project(key)
    for number in range(1, 121):
        fake.add_issue("PAY", number)
    fake.add_issue("OPS", 1)
    await pull(Env(), settings, "jira", "jira", "project", {})
    assert [p["key"] for p in catalog.items("jira", "s1", 0)] == ["PAY", "OPS"]
    selector = {"query": "true", "jql": "project = PAY order by key"}
    result = await pull(Env(), settings, "jira", "jira", "issue", {}, resource=1, selector=selector)
    assert [i["key"] for i in catalog.items("jira", "s1", 1)] == [f"PAY-{n}" for n in range(1, 121)]
    # Jira capped each page at 50: the client followed startAt, not its own page size.
    assert result.pages == 3
    searches = fake.calls("GET", "/rest/api/2/search")
    assert [r.query["startAt"] for r in searches] == ["0", "50", "100"]
    assert {r.query["jql"] for r in searches} == {"project = PAY order by key"}


async def test_jira_500_on_a_page_is_retryable(
    jira: tuple[FakeJiraSearch, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = jira
    for number in range(1, 80):
        fake.add_issue("PAY", number)
    fake.fail_page("issues", 2, 500)
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings, "jira", "jira", "issue", {"jql": "project = PAY"})
    assert not failed.value.non_retryable
    assert len(catalog.items("jira", "s1")) == 50


@pytest.fixture
def pagerduty(
    pagerduty_server: FakePagerDuty, catalog: FakeSyncCatalog
) -> Iterator[tuple[FakePagerDuty, Any]]:
    pagerduty_server.reset()
    open_record(catalog, "pd")
    yield (
        pagerduty_server,
        settings_for(catalog, pagerduty_token=FakePagerDuty.token, pagerduty_api_url=pagerduty_server.url),
    )


async def test_pagerduty_services_open_incidents_and_oncalls(
    pagerduty: tuple[FakePagerDuty, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = pagerduty
    services = [fake.add_service(f"svc-{n:03d}") for n in range(205)]
    fake.add_incident(services[0])
    fake.add_incident(services[1], status="resolved")
    fake.add_incident(services[2], status="acknowledged")
    fake.add_oncall("alice")
    result = await pull(Env(), settings, "pd", "pagerduty", "service", {})
    assert [s["name"] for s in catalog.items("pd", "s1", 0)] == [f"svc-{n:03d}" for n in range(205)]
    assert result.pages == 3
    await pull(Env(), settings, "pd", "pagerduty", "incident", {}, resource=1)
    assert [i["status"] for i in catalog.items("pd", "s1", 1)] == ["triggered", "acknowledged"]
    await pull(Env(), settings, "pd", "pagerduty", "oncall", {}, resource=2)
    assert [o["user"]["summary"] for o in catalog.items("pd", "s1", 2)] == ["alice"]
    assert all(r.headers["authorization"] == f"Token token={FakePagerDuty.token}" for r in fake.calls("GET"))


@pytest.fixture
def kubernetes(
    kubernetes_server: FakeKubernetes, catalog: FakeSyncCatalog, tmp_path: Path
) -> Iterator[tuple[FakeKubernetes, Any]]:
    kubernetes_server.reset()
    open_record(catalog, "k8s")
    kubeconfig = kubernetes_server.kubeconfig(tmp_path / "kubeconfig")
    yield kubernetes_server, settings_for(catalog, kubernetes_kubeconfig=kubeconfig)


async def test_kubernetes_kinds_page_with_continue_tokens_and_carry_the_cluster_name(
    kubernetes: tuple[FakeKubernetes, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = kubernetes
    for n in range(450):
        fake.add_pod("shop", f"web-{n:03d}")
    fake.add_namespace("shop")
    fake.add_deployment("shop", "web")
    fake.add_service("shop", "web")
    result = await pull(Env(), settings, "k8s", "kubernetes", "pod", {"cluster_name": "prod-eu"})
    pods = catalog.items("k8s", "s1", 0)
    assert [p["metadata"]["name"] for p in pods] == [f"web-{n:03d}" for n in range(450)]
    assert {p["cluster_name"] for p in pods} == {"prod-eu"}
    assert result.pages == 3
    assert [r.query.get("continue") is not None for r in fake.calls("GET", "/api/v1/pods")] == [
        False,
        True,
        True,
    ]
    for index, kind in enumerate(("namespace", "deployment", "service"), start=1):
        await pull(Env(), settings, "k8s", "kubernetes", kind, {}, resource=index)
    deployment = catalog.items("k8s", "s1", 2)[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:1.0"
    # Without config.cluster_name, the kubeconfig context names the cluster.
    assert catalog.items("k8s", "s1", 1)[0]["cluster_name"] == FakeKubernetes.context


async def test_kubernetes_expired_continue_token_lists_again(
    kubernetes: tuple[FakeKubernetes, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = kubernetes
    for n in range(300):
        fake.add_pod("shop", f"web-{n:03d}")
    fake.fail_page("pods", 2, 410, body={"kind": "Status", "code": 410, "reason": "Expired"})
    result = await pull(Env(), settings, "k8s", "kubernetes", "pod", {})
    names = {p["metadata"]["name"] for p in catalog.items("k8s", "s1")}
    assert names == {f"web-{n:03d}" for n in range(300)}
    assert result.items == 500  # page 1 twice (the restart), then pages 2 and 3


async def test_kubernetes_500_is_retryable(
    kubernetes: tuple[FakeKubernetes, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = kubernetes
    fake.add_namespace("a")
    fake.fail_page("namespaces", 1, 500)
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings, "k8s", "kubernetes", "namespace", {})
    assert not failed.value.non_retryable and "500" in failed.value.message

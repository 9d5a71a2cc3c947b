"""GitHub pulls, through the fake GitHub org to the fake catalog: every kind pages with Link
headers, rate limits are waited out, a failed page fails the pull retryably, and a retry resumes
at the heartbeated page without counting anything twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from tests.fakes.github_org import FakeGitHubOrg
from tests.fakes.sync_catalog import FakeSyncCatalog
from tests.sources.worker_fixtures import Env, open_record, pull, running, settings_for

CONFIG = {"org": "acme"}


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHubOrg]:
    yield from running(FakeGitHubOrg())


@pytest.fixture
def github(github_server: FakeGitHubOrg) -> FakeGitHubOrg:
    github_server.reset()
    return github_server


@pytest.fixture
def settings(catalog: FakeSyncCatalog, github: FakeGitHubOrg) -> Any:
    open_record(catalog, "gh")
    return settings_for(catalog, github_token=FakeGitHubOrg.token, github_api_url=github.url)


async def test_repositories_page_through_link_headers_to_the_catalog(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(250)
    env = Env()
    result = await pull(env, settings, "gh", "github", "repository", CONFIG)
    names = [item["full_name"] for item in catalog.items("gh", "s1")]
    assert names == [f"acme/svc-{n:04d}" for n in range(250)]
    assert result.pages == 3 and result.items == 250 and result.counts["seen"] == 250
    pages = [page for _, page, _ in catalog.applied["gh", "s1"]]
    assert pages[0] == "" and "page=2" in pages[1] and "page=3" in pages[2]
    assert github.served == [("repos", 1), ("repos", 2), ("repos", 3)]
    assert all(r.headers["authorization"] == f"Bearer {FakeGitHubOrg.token}" for r in github.calls("GET"))
    # Each page's cursor was heartbeated after the page reached the catalog.
    assert [h["cursor"] for h in env.heartbeats if h] == [pages[1], pages[2], ""]


async def test_pull_requests_and_workflow_runs_are_listed_repository_by_repository(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    for name in ("api", "web", "empty"):
        github.add_repo(name)
    for number in range(1, 151):
        github.add_pull("api", number)
    github.add_pull("web", 1, state="closed")
    github.add_run("web", 42)
    await pull(Env(), settings, "gh", "github", "pull-request", CONFIG)
    pulls = catalog.items("gh", "s1")
    assert [(p["base"]["repo"]["name"], p["number"]) for p in pulls] == [
        ("api", n) for n in range(1, 151)
    ] + [("web", 1)]
    await pull(Env(), settings, "gh", "github", "workflow-run", CONFIG, resource=1)
    assert [(r["id"], r["repository"]["full_name"]) for r in catalog.items("gh", "s1", 1)] == [
        (42, "acme/web")
    ]


async def test_teams(settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg) -> None:
    github.add_team("platform")
    github.add_team("payments")
    await pull(Env(), settings, "gh", "github", "team", CONFIG)
    assert [t["slug"] for t in catalog.items("gh", "s1")] == ["platform", "payments"]


async def test_a_rate_limit_is_waited_out_in_place(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(150)
    github.fail_page("repos", 2, 429, headers={"Retry-After": "1"})
    github.fail_page("repos", 2, 403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"})
    result = await pull(Env(), settings, "gh", "github", "repository", CONFIG)
    assert result.items == 150 and len(catalog.items("gh", "s1")) == 150
    assert [r.query.get("page") for r in github.calls("GET", "/orgs/acme/repos")] == [None, "2", "2", "2"]


async def test_a_rate_limit_longer_than_the_wait_is_a_retryable_error_with_its_delay(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(150)
    github.fail_page("repos", 2, 429, headers={"Retry-After": "600"})
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings, "gh", "github", "repository", CONFIG)
    assert not failed.value.non_retryable
    assert failed.value.next_retry_delay is not None and failed.value.next_retry_delay.total_seconds() == 600
    assert len(catalog.items("gh", "s1")) == 100  # the first page landed


async def test_a_500_mid_pull_fails_retryably_and_the_retry_resumes_at_that_page(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(350)
    github.fail_page("repos", 3, 500)
    env = Env()
    with pytest.raises(ApplicationError) as failed:
        await pull(env, settings, "gh", "github", "repository", CONFIG)
    assert not failed.value.non_retryable and "500" in failed.value.message
    last = [h for h in env.heartbeats if h][-1]
    assert last["pages"] == 2 and "page=3" in last["cursor"]
    # The retry starts at page 3, and sends page 2 again as a crash could have: counted once.
    again = Env().retrying({**last, "cursor": [p for _, p, _ in catalog.applied["gh", "s1"]][1]})
    result = await pull(again, settings, "gh", "github", "repository", CONFIG)
    assert [r.query.get("page") for r in github.calls("GET", "/orgs/acme/repos")] == [
        None,
        "2",
        "3",
        "2",
        "3",
        "4",
    ]
    names = [item["full_name"] for item in catalog.items("gh", "s1")]
    assert names == [f"acme/svc-{n:04d}" for n in range(350)]
    assert catalog.syncs["gh", "s1"]["counts"]["seen"] == 350
    # The pull's own tally includes what it sent twice; the sync record's counts are the truth.
    assert result.pages == 5 and result.items == 450


async def test_a_next_link_to_another_host_is_not_followed(
    settings: Any, catalog: FakeSyncCatalog, github: FakeGitHubOrg
) -> None:
    github.add_repos(5)
    github.fail_page(
        "repos", 1, 200, headers={"Link": '<https://attacker.example/steal?page=2>; rel="next"'}, body=[]
    )
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings, "gh", "github", "repository", CONFIG)
    assert failed.value.non_retryable and "attacker.example" in failed.value.message


async def test_an_unknown_resource_kind_is_a_non_retryable_error_naming_the_known_ones(
    settings: Any, catalog: FakeSyncCatalog
) -> None:
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings, "gh", "github", "deployment", CONFIG)
    assert failed.value.type == "UnknownResourceKind" and failed.value.non_retryable
    assert "pull-request, repository, team, workflow-run" in failed.value.message


async def test_a_vendor_without_settings_fails_naming_them(catalog: FakeSyncCatalog) -> None:
    with pytest.raises(ApplicationError) as failed:
        await pull(Env(), settings_for(catalog), "gh", "github", "repository", CONFIG)
    assert failed.value.type == "SourceNotConfigured" and "GANTRY_GITHUB_TOKEN" in failed.value.message

"""``files`` pulls (catalog files read through the fake GitHub's contents API) and ``aws`` pulls
(boto3 against moto): the items that reach the catalog, page by page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.fakes.github_org import FakeGitHubOrg
from tests.fakes.moto import moto_server
from tests.fakes.sync_catalog import FakeSyncCatalog
from tests.sources.worker_fixtures import Env, open_record, pull, running, settings_for

CATALOG_INFO = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  annotations: {github.com/project-slug: acme/payments}
spec: {type: service, lifecycle: production, owner: team-payments, system: billing}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: payments-api, created: 2026-01-02}
spec: {type: openapi, lifecycle: production, owner: team-payments, definition: "openapi: 3.0.0"}
"""


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHubOrg]:
    yield from running(FakeGitHubOrg())


@pytest.fixture
def files(github_server: FakeGitHubOrg, catalog: FakeSyncCatalog) -> tuple[FakeGitHubOrg, Any]:
    github_server.reset()
    open_record(catalog, "files")
    return github_server, settings_for(
        catalog, github_token=FakeGitHubOrg.token, github_api_url=github_server.url
    )


async def test_every_yaml_document_of_every_repository_is_one_item(
    files: tuple[FakeGitHubOrg, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = files
    for name in ("payments", "search", "old"):
        fake.add_repo(name, archived=name == "old")
    fake.add_file("payments", "catalog-info.yaml", CATALOG_INFO)
    fake.add_file("search", "gantry.yaml", "identifier: search\nblueprint: service\ntitle: Search\n")
    fake.add_file("old", "catalog-info.yaml", CATALOG_INFO)
    await pull(Env(), settings, "files", "files", "file", {"org": "acme"})
    items = catalog.items("files", "s1")
    assert [(i["repository"], i["path"]) for i in items] == [
        ("acme/payments", "catalog-info.yaml"),
        ("acme/payments", "catalog-info.yaml"),
        ("acme/search", "gantry.yaml"),
    ]
    assert items[0]["document"]["metadata"]["name"] == "payments"
    assert items[0]["url"] == "https://github.example/acme/payments/blob/main/catalog-info.yaml"
    assert items[1]["document"]["metadata"]["created"] == "2026-01-02"  # a YAML date, as JSON text
    assert items[2]["document"] == {"identifier": "search", "blueprint": "service", "title": "Search"}
    # Archived repositories are not read.
    assert not fake.calls("GET", "/repos/acme/old/contents")


async def test_a_file_that_is_not_yaml_is_an_item_error_and_the_rest_lands(
    files: tuple[FakeGitHubOrg, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = files
    fake.add_repo("broken")
    fake.add_repo("fine")
    fake.add_file("broken", "catalog-info.yaml", "kind: Component\nmetadata: {name: [unclosed\n")
    fake.add_file("broken", "gantry.yaml", "a: &x [1, 2]\nb: *x\n")
    fake.add_file("fine", "gantry.yaml", "identifier: fine\nblueprint: service\n")
    result = await pull(
        Env(),
        settings,
        "files",
        "files",
        "file",
        {"org": "acme", "paths": ["catalog-info.yaml", "gantry.yaml"]},
    )
    items = catalog.items("files", "s1")
    assert [(i["repository"], i["path"], i["document"] is None) for i in items] == [
        ("acme/broken", "catalog-info.yaml", True),
        ("acme/broken", "gantry.yaml", True),
        ("acme/fine", "gantry.yaml", False),
    ]
    assert "not valid YAML" in items[0]["error"]
    assert "aliases" in items[1]["error"]
    assert result.items == 3


async def test_configured_paths_are_the_ones_read(
    files: tuple[FakeGitHubOrg, Any], catalog: FakeSyncCatalog
) -> None:
    fake, settings = files
    fake.add_repo("svc")
    fake.add_file("svc", "catalog-info.yaml", CATALOG_INFO)
    fake.add_file("svc", "deploy/catalog.yaml", "identifier: svc\nblueprint: service\n")
    await pull(Env(), settings, "files", "files", "file", {"org": "acme", "paths": ["deploy/catalog.yaml"]})
    assert [i["path"] for i in catalog.items("files", "s1")] == ["deploy/catalog.yaml"]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, catalog: FakeSyncCatalog, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    open_record(catalog, "aws")
    return settings_for(catalog, aws_endpoint_url=moto_url)


def _client(service: str, moto_url: str, region: str) -> Any:
    return boto3.client(service, endpoint_url=moto_url, region_name=region)


async def test_aws_stacks_functions_buckets_and_services_in_each_region(
    aws: Any, moto_url: str, catalog: FakeSyncCatalog
) -> None:
    template = '{"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}'
    for region, count in (("us-east-1", 3), ("eu-west-1", 2)):
        cfn = _client("cloudformation", moto_url, region)
        for n in range(count):
            cfn.create_stack(
                StackName=f"env-{region}-{n}", TemplateBody=template, Tags=[{"Key": "team", "Value": "ops"}]
            )
    s3 = _client("s3", moto_url, "us-east-1")
    for n in range(3):
        s3.create_bucket(Bucket=f"gantry-sources-{n}")
    iam = _client("iam", moto_url, "us-east-1")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = _client("lambda", moto_url, "eu-west-1")
    for n in range(60):
        lam.create_function(
            FunctionName=f"fn-{n:02d}",
            Runtime="python3.12",
            Role=role,
            Handler="x.handler",
            Code={"ZipFile": b"PK"},
        )
    ecs = _client("ecs", moto_url, "us-east-1")
    ecs.create_cluster(clusterName="apps")
    ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 64}]
    )
    for n in range(12):
        ecs.create_service(cluster="apps", serviceName=f"web-{n:02d}", taskDefinition="web", desiredCount=1)
    config = {"regions": ["us-east-1", "eu-west-1"]}

    await pull(Env(), aws, "aws", "aws", "cloudformation-stack", config)
    # The moto server is shared with other tests' stacks: look at this test's own.
    stacks = [
        s
        for s in catalog.items("aws", "s1", 0)
        if s["StackName"].startswith(("env-us-east-1-", "env-eu-west-1-"))
    ]
    assert sorted((s["StackName"], s["__Region"]) for s in stacks) == sorted(
        [(f"env-us-east-1-{n}", "us-east-1") for n in range(3)]
        + [(f"env-eu-west-1-{n}", "eu-west-1") for n in range(2)]
    )
    assert isinstance(stacks[0]["CreationTime"], str) and stacks[0]["Tags"] == [
        {"Key": "team", "Value": "ops"}
    ]

    functions = await pull(Env(), aws, "aws", "aws", "lambda-function", config, resource=1)
    assert sorted(f["FunctionName"] for f in catalog.items("aws", "s1", 1)) == [
        f"fn-{n:02d}" for n in range(60)
    ]
    assert functions.pages >= 2  # one region after the other

    await pull(Env(), aws, "aws", "aws", "s3-bucket", config, resource=2)
    names = [b["Name"] for b in catalog.items("aws", "s1", 2)]
    assert {f"gantry-sources-{n}" for n in range(3)} <= set(names) and len(names) == len(set(names))

    await pull(Env(), aws, "aws", "aws", "ecs-service", config, resource=3)
    described = catalog.items("aws", "s1", 3)
    assert sorted(s["serviceName"] for s in described) == [f"web-{n:02d}" for n in range(12)]
    assert {s["__Region"] for s in described} == {"us-east-1"}

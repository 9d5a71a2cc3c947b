"""Every step kind inside one real workflow run, each against its fake vendor (AWS: moto)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.jira import FakeJira
from tests.fakes.moto import moto_server
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver
from tests.workflows.conftest import ADMIN_TOKEN, Stack, serve_api, stack_settings
from workflows import ALL_WORKFLOWS

TEMPLATE = {
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "env-{{ inputs.name }}"}}
    },
    "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}},
}


@pytest.fixture
def vendors() -> Iterator[dict[str, Any]]:
    fakes = {"gitlab": FakeGitLab(), "jenkins": FakeJenkins(), "jira": FakeJira(), "slack": FakeSlack()}
    with (
        serve(fakes["gitlab"].app) as gitlab,
        serve(fakes["jenkins"].app) as jenkins,
        serve(fakes["jira"].app) as jira,
        serve(fakes["slack"].app) as slack,
        moto_server() as aws,
    ):
        for fake, url in zip(fakes.values(), (gitlab, jenkins, jira, slack), strict=True):
            fake.url = url
        yield {
            "gitlab": gitlab,
            "jenkins": jenkins,
            "jira": jira,
            "slack": slack,
            "aws": aws,
            **{f"fake_{k}": v for k, v in fakes.items()},
        }


@pytest.fixture
async def full_stack(
    tmp_path: Path,
    temporal: WorkflowEnvironment,
    webhook: FakeWebhookReceiver,
    vendors: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Stack, dict[str, object]]]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(vendors["aws"]))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    webhook.reset()
    settings = stack_settings(
        tmp_path,
        temporal,
        gitlab_url=vendors["gitlab"],
        gitlab_token=FakeGitLab.token,
        jenkins_url=vendors["jenkins"],
        jenkins_user=FakeJenkins.user,
        jenkins_token=FakeJenkins.token,
        jira_url=vendors["jira"],
        jira_user=FakeJira.user,
        jira_token=FakeJira.token,
        slack_bot_token=FakeSlack.token,
        slack_api_url=f"{vendors['slack']}/api/",
    )
    with serve_api(settings) as api_url:
        settings = settings.model_copy(update={"api_url": api_url})
        async with (
            httpx.AsyncClient(
                base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            ) as api,
            Worker(
                temporal.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            yield Stack(settings, api, temporal.client, webhook, None, vendors["fake_jira"]), vendors  # type: ignore[arg-type]


async def test_every_step_kind_in_one_run(full_stack: tuple[Stack, dict[str, object]]) -> None:
    stack, vendors = full_stack
    action = {
        "identifier": "provision",
        "title": "Provision everything",
        "blueprint": "environment",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"name": {"type": "string"}}, "required": ["name"]},
        "steps": [
            {
                "id": "pipeline",
                "uses": "gitlab.pipeline",
                "wait_for_completion": True,
                "with": {"project": "group/app", "ref": "main", "variables": {"ENV": "{{ inputs.name }}"}},
            },
            {
                "id": "build",
                "uses": "jenkins.build",
                "with": {"job": "team/deploy", "parameters": {"NAME": "{{ inputs.name }}"}},
            },
            {
                "id": "stack",
                "uses": "aws.cloudformation.deploy_stack",
                # A CREATE action names the entity its stack is for (tagged gantry:entity).
                "with": {
                    "stack_name": "env-{{ inputs.name }}",
                    "entity": "{{ inputs.name }}",
                    "template": TEMPLATE,
                },
            },
            {
                "id": "ticket",
                "uses": "jira.create_issue",
                "with": {
                    "project": "OPS",
                    "summary": "Environment {{ inputs.name }} is up",
                    "description": "bucket {{ steps.stack.outputs.outputs.BucketName }}",
                },
            },
            {
                "id": "comment",
                "uses": "jira.comment",
                "with": {
                    "issue": "{{ steps.ticket.outputs.key }}",
                    "body": "pipeline {{ steps.pipeline.outputs.pipeline_url }}",
                },
            },
            {
                "id": "close",
                "uses": "jira.transition",
                "with": {"issue": "{{ steps.ticket.outputs.key }}", "transition": "Done"},
            },
            {
                "id": "announce",
                "uses": "slack.post_message",
                "with": {
                    "channel": "C0DEPLOYS",
                    "text": "{{ inputs.name }} ready: {{ steps.ticket.outputs.url }}",
                },
            },
            {
                "id": "record",
                "uses": "catalog.upsert_entity",
                "with": {
                    "blueprint": "environment",
                    "identifier": "{{ inputs.name }}",
                    "properties": {"stack": "{{ steps.stack.outputs.stack_id }}"},
                },
            },
            {"id": "pause", "uses": "sleep", "with": {"duration": "PT0.2S"}},
            {
                "id": "teardown",
                "uses": "aws.cloudformation.delete_stack",
                "with": {"stack_name": "env-{{ inputs.name }}", "entity": "{{ inputs.name }}"},
            },
            {
                "id": "forget",
                "uses": "catalog.delete_entity",
                "with": {"blueprint": "environment", "identifier": "{{ inputs.name }}"},
            },
        ],
    }
    environment = {
        "identifier": "environment",
        "title": "Environment",
        "schema": {"properties": {"stack": {"type": "string"}}},
    }
    assert (await stack.api.post("/v1/blueprints", json=environment)).status_code == 201
    created = await stack.api.post("/v1/actions", json=action)
    assert created.status_code == 201, created.text
    run = await stack.launch("provision", inputs={"name": "dev-42"})
    done = await stack.wait_for(run["id"], {"SUCCESS", "FAILURE"}, timeout=90)
    assert done["status"] == "SUCCESS", (done["error"], [(s["id"], s["status"]) for s in done["steps"]])
    outputs = {s["id"]: s["outputs"] for s in done["steps"]}
    assert outputs["pipeline"]["status"] == "success"
    assert outputs["build"]["result"] == "SUCCESS"
    assert outputs["stack"]["outputs"] == {"BucketName": "env-dev-42"}
    assert outputs["close"]["status"] == "Done"
    assert [e["operation"] for e in done["affected_entities"]] == ["UPSERT", "DELETE"]

    gitlab, jenkins, jira, slack = (vendors[f"fake_{k}"] for k in ("gitlab", "jenkins", "jira", "slack"))
    assert len(gitlab.calls("POST", r"/pipeline$")) == 1  # type: ignore[attr-defined]
    assert len(jenkins.calls("POST", "buildWithParameters")) == 1  # type: ignore[attr-defined]
    (issue,) = jira.issues.values()  # type: ignore[attr-defined]
    assert issue["fields"]["summary"] == "Environment dev-42 is up"
    (post,) = slack.calls("POST", "chat.postMessage")  # type: ignore[attr-defined]
    assert "dev-42 ready" in str(post.json or post.form)

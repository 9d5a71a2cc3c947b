"""aws.cloudformation.* on a moto server (real boto3 calls over HTTP)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities.cloud import CloudFormation, cloudformation_client
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, StepInput
from tests.activities.conftest import POLL, Env, step

TEMPLATE: dict[str, Any] = {
    "Parameters": {"TopicName": {"Type": "String"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Ref": "TopicName"}}}},
    "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}},
}


@pytest.fixture
def cfn(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> CloudFormation:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return CloudFormation(
        cloudformation_client(endpoint_url=moto_url, region_name="us-east-1"), poll_interval=POLL
    )


@pytest.fixture
def stack_name() -> str:
    return f"env-{uuid.uuid4().hex[:8]}"


ENTITY = "environment/dev-1"


def for_entity(request: StepInput, entity: str = ENTITY) -> StepInput:
    """The step as the workflow sends it for a run on ``entity``."""
    return dataclasses.replace(request, entity=entity)


def deploy(
    name: str, topic: str = "t1", template: Any = None, entity: str = ENTITY, **params: Any
) -> StepInput:
    defaults = {"tags": {"team": "platform"}, "capabilities": ["CAPABILITY_IAM"]}
    request = step(
        "aws.cloudformation.deploy_stack",
        stack_name=name,
        template=template or TEMPLATE,
        parameters={"TopicName": topic},
        **{**defaults, **params},
    )
    return for_entity(request, entity)


def delete(name: str, entity: str = ENTITY, **params: Any) -> StepInput:
    return for_entity(step("aws.cloudformation.delete_stack", stack_name=name, **params), entity)


async def test_create_update_noop_and_delete(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    created = await env.run(cfn.deploy_stack, deploy(stack_name, template=yaml.safe_dump(TEMPLATE)))
    assert created.outputs["status"] == "CREATE_COMPLETE"
    assert created.outputs["outputs"]["TopicArn"].endswith(":t1")
    assert {"stack_id": created.outputs["stack_id"], "status": "CREATE_COMPLETE"} in env.heartbeats

    updated = await env.run(cfn.deploy_stack, deploy(stack_name, topic="t2"))
    assert updated.outputs["status"] == "UPDATE_COMPLETE"
    assert updated.outputs["stack_id"] == created.outputs["stack_id"]
    assert updated.outputs["outputs"]["TopicArn"].endswith(":t2")

    same = await env.run(cfn.deploy_stack, deploy(stack_name, topic="t2"))
    assert same.log == [f"{stack_name} is up to date"]
    assert same.outputs["outputs"] == updated.outputs["outputs"]

    deleted = await env.run(cfn.delete_stack, delete(stack_name))
    assert deleted.outputs == {"stack_id": created.outputs["stack_id"], "status": "DELETE_COMPLETE"}
    again = await env.run(cfn.delete_stack, delete(stack_name))
    assert again.outputs["status"] == "DELETE_COMPLETE"


async def test_retried_deploy_does_not_create_twice(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    first = await Env().run(cfn.deploy_stack, deploy(stack_name))
    again = await env.retrying().run(cfn.deploy_stack, deploy(stack_name))
    assert again.outputs["stack_id"] == first.outputs["stack_id"]


async def test_missing_parameter_is_not_retried(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    request = deploy(stack_name)
    request.params["parameters"] = {}
    with pytest.raises(ApplicationError) as err:
        await env.run(cfn.deploy_stack, request)
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert "AWS 400: ValidationError" in err.value.message


class _RolledBack:
    """A stand-in client: moto cannot make a stack roll back, so this one always does."""

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        if StackName == "env":
            from botocore.exceptions import ClientError

            error = {
                "Error": {"Code": "ValidationError", "Message": "Stack with id env does not exist"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(error, "DescribeStacks")
        return {
            "Stacks": [
                {
                    "StackId": "arn:env",
                    "StackName": "env",
                    "StackStatus": "ROLLBACK_COMPLETE",
                    "StackStatusReason": "The following resource(s) failed to create: [Topic].",
                }
            ]
        }

    def create_stack(self, **kwargs: Any) -> dict[str, Any]:
        return {"StackId": "arn:env"}

    def describe_stack_events(self, StackName: str) -> dict[str, Any]:
        return {
            "StackEvents": [
                {
                    "LogicalResourceId": "Topic",
                    "ResourceStatus": "CREATE_FAILED",
                    "ResourceStatusReason": "Topic name is taken",
                }
            ]
        }


async def test_rollback_fails_the_step_with_the_reason(env: Env) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(CloudFormation(_RolledBack(), poll_interval=POLL).deploy_stack, deploy("env"))
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    assert "ROLLBACK_COMPLETE" in err.value.message and "Topic: Topic name is taken" in err.value.message


# ---- only stacks Gantry created for the run's entity -----------------------------------------


def _tags(cfn: CloudFormation, name: str) -> dict[str, str]:
    (stack,) = cfn._cfn.describe_stacks(StackName=name)["Stacks"]
    return {t["Key"]: t["Value"] for t in stack.get("Tags") or []}


def _exists(cfn: CloudFormation, name: str) -> bool:
    return any(
        s["StackName"] == name
        for s in cfn._cfn.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    )


def _made_outside_gantry(cfn: CloudFormation, name: str, **tags: str) -> None:
    cfn._cfn.create_stack(
        StackName=name,
        TemplateBody=yaml.safe_dump(TEMPLATE),
        Parameters=[{"ParameterKey": "TopicName", "ParameterValue": name}],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


async def _refused(env: Env, fn: Any, request: StepInput) -> str:
    with pytest.raises(ApplicationError) as err:
        await env.run(fn, request)
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    return str(err.value.message)


async def test_deploy_tags_the_stack_with_its_entity(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    # A tag given in the step cannot claim another entity: the run's entity wins.
    await env.run(cfn.deploy_stack, deploy(stack_name, tags={"gantry:entity": "environment/prod"}))
    assert _tags(cfn, stack_name)["gantry:entity"] == ENTITY


async def test_delete_refuses_a_stack_made_outside_gantry(
    env: Env, cfn: CloudFormation, stack_name: str
) -> None:
    _made_outside_gantry(cfn, stack_name, team="payments")
    message = await _refused(env, cfn.delete_stack, delete(stack_name))
    assert stack_name in message and "gantry:entity=(none)" in message and "allow_untagged" in message
    assert _exists(cfn, stack_name)


async def test_delete_refuses_another_entitys_stack(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    await env.run(cfn.deploy_stack, deploy(stack_name, entity="environment/prod"))
    message = await _refused(env, cfn.delete_stack, delete(stack_name, entity="environment/dev-1"))
    assert "gantry:entity=environment/prod" in message
    await _refused(env, cfn.delete_stack, delete(stack_name, entity=""))
    assert _exists(cfn, stack_name)


async def test_deploy_refuses_to_take_over_a_stack_made_outside_gantry(
    env: Env, cfn: CloudFormation, stack_name: str
) -> None:
    _made_outside_gantry(cfn, stack_name)
    message = await _refused(env, cfn.deploy_stack, deploy(stack_name, topic="mine"))
    assert "refusing to update" in message
    assert "gantry:entity" not in _tags(cfn, stack_name)


async def test_deploy_needs_an_entity_to_tag_with(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    await _refused(env, cfn.deploy_stack, deploy(stack_name, entity=""))
    assert not _exists(cfn, stack_name)


async def test_allow_untagged_is_the_authors_way_out(env: Env, cfn: CloudFormation, stack_name: str) -> None:
    _made_outside_gantry(cfn, stack_name)
    deleted = await env.run(cfn.delete_stack, delete(stack_name, allow_untagged=True))
    assert deleted.outputs["status"] == "DELETE_COMPLETE"
    assert not _exists(cfn, stack_name)
    # A string is not the author's literal true (the action check refuses templates there too).
    _made_outside_gantry(cfn, stack_name)
    await _refused(env, cfn.delete_stack, delete(stack_name, allow_untagged="true"))

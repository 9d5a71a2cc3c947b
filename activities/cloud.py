"""AWS step kinds: ``aws.cloudformation.deploy_stack`` and ``aws.cloudformation.delete_stack``.

Both are idempotent by looking at the stack first: deploy creates a missing stack, updates an
existing one ("No updates are to be performed" is success), waits out an operation an earlier
attempt left in progress, and replaces a stack stuck in ROLLBACK_COMPLETE (a failed first
create, which CloudFormation cannot update). Delete of a missing stack succeeds. boto3 blocks,
so every call runs in a thread; the waits poll and heartbeat.

A stack name usually comes from data a member wrote (``entity.properties.stack_name``), so
neither step trusts it: deploy tags what it creates ``gantry:entity={blueprint}/{identifier}``
(the run's entity), and both change or delete an existing stack only when it carries that tag
for the same entity. ``allow_untagged: true`` in the step's ``with`` — an author's literal,
checked when the action is saved — lifts the check.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import BENIGN, bad_params, network_reason, step_failed, unreachable
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput, StepResult

_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE", "DELETE_COMPLETE"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
ENTITY_TAG = "gantry:entity"

Json = dict[str, Any]


def aws_error(exc: Exception) -> ApplicationError:
    """A botocore error as a Temporal error: 4xx (but throttling) non-retryable, the rest retryable;
    BENIGN (expected, logged as one line)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        message = f"AWS {status}: {error.get('Code')}: {error.get('Message')}"
        details = {"status": status}
        if status < 500 and error.get("Code") not in _THROTTLED:
            return ApplicationError(
                message, details, type=VENDOR_CLIENT_ERROR, non_retryable=True, category=BENIGN
            )
        return ApplicationError(message, details, type=VENDOR_SERVER_ERROR, category=BENIGN)
    # botocore's connection errors name the endpoint they could not reach.
    endpoint = str((getattr(exc, "kwargs", None) or {}).get("endpoint_url") or "")
    return unreachable("AWS", network_reason(exc), urlsplit(endpoint).netloc)


def aws_region() -> str | None:
    """AWS_REGION, else boto3's own (AWS_DEFAULT_REGION, the AWS config file)."""
    return os.environ.get("AWS_REGION") or boto3.session.Session().region_name


def cloudformation_client(endpoint_url: str | None = None, region_name: str | None = None) -> Any:
    """A boto3 client; without arguments boto3 reads AWS_ENDPOINT_URL(_CLOUDFORMATION) and
    credentials from the environment itself."""
    return boto3.client("cloudformation", endpoint_url=endpoint_url, region_name=region_name or aws_region())


def _settled(status: str) -> bool:
    return not status.endswith("_IN_PROGRESS")


def entity_tag(stack: Json) -> str | None:
    """The stack's ``gantry:entity`` tag, or None."""
    return next((t.get("Value") for t in stack.get("Tags") or [] if t.get("Key") == ENTITY_TAG), None)


def _untagged_allowed(step: StepInput) -> bool:
    return step.params.get("allow_untagged") is True


def check_owned(stack: Json, step: StepInput, verb: str) -> None:
    """Refuse (non-retryably) to ``verb`` a stack not tagged for the step's entity."""
    if _untagged_allowed(step):
        return
    tag = entity_tag(stack)
    if step.entity and tag == step.entity:
        return
    name = stack.get("StackName", stack["StackId"])
    raise step_failed(
        f"refusing to {verb} stack {name}: it is tagged {ENTITY_TAG}={tag or '(none)'}, not "
        f"{step.entity or '(no entity)'}; Gantry {verb}s only stacks it created for the run's entity "
        "(set allow_untagged: true on the step to allow others)"
    )


class CloudFormation:
    """Takes a boto3 CloudFormation client (its endpoint honours ``AWS_ENDPOINT_URL``)."""

    def __init__(self, client: Any, poll_interval: float = 5.0) -> None:
        self._cfn = client
        self._poll = poll_interval

    async def _aws(self, operation: str, **kwargs: Any) -> Json:
        try:
            return dict(await asyncio.to_thread(getattr(self._cfn, operation), **kwargs))
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise aws_error(exc) from exc

    async def _describe(self, stack: str) -> Json | None:
        """The stack, or None when it does not exist."""
        try:
            return (await self._aws("describe_stacks", StackName=stack))["Stacks"][0]
        except ApplicationError as exc:
            if "does not exist" in exc.message:
                return None
            raise

    async def _wait(self, stack_id: str) -> Json:
        while True:
            stack = await self._describe(stack_id)
            if stack is None:  # deleted stacks vanish from describe-by-name
                return {"StackId": stack_id, "StackStatus": "DELETE_COMPLETE"}
            activity.heartbeat({"stack_id": stack_id, "status": stack["StackStatus"]})
            if _settled(stack["StackStatus"]):
                return stack
            await asyncio.sleep(self._poll)

    async def _fail_unless_ok(self, stack: Json) -> None:
        status = stack["StackStatus"]
        if status in _OK:
            return
        reason = stack.get("StackStatusReason") or ""
        events = (await self._aws("describe_stack_events", StackName=stack["StackId"]))["StackEvents"]
        causes = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in events
            if e.get("ResourceStatus", "").endswith("FAILED") and e.get("ResourceStatusReason")
        ]
        detail = "; ".join(filter(None, [reason, *reversed(causes[:3])]))
        raise step_failed(
            f"stack {stack.get('StackName', stack['StackId'])} is {status}: {detail}".rstrip(": ")
        )

    @activity.defn(name="aws.cloudformation.deploy_stack")
    async def deploy_stack(self, step: StepInput) -> StepResult:
        params = step.params
        name = str(params.get("stack_name") or "")
        if not name or not params.get("template"):
            raise bad_params("aws.cloudformation.deploy_stack needs stack_name and template")
        if not step.entity and not _untagged_allowed(step):
            raise bad_params(
                "aws.cloudformation.deploy_stack tags its stack with its entity: the run's entity, "
                "or in a CREATE action the identifier given as 'entity' in the step's with"
            )
        template = params["template"]
        tags = {str(k): str(v) for k, v in (params.get("tags") or {}).items() if str(k) != ENTITY_TAG}
        if step.entity:
            tags[ENTITY_TAG] = step.entity
        request: Json = {
            "StackName": name,
            "TemplateBody": template if isinstance(template, str) else json.dumps(template),
            "Parameters": [
                {"ParameterKey": str(k), "ParameterValue": str(v)}
                for k, v in (params.get("parameters") or {}).items()
            ],
            "Capabilities": list(params.get("capabilities") or []),
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        log: list[str] = []
        stack = await self._describe(name)
        if stack:
            check_owned(stack, step, "update")
        if stack and not _settled(stack["StackStatus"]):
            log.append(f"waiting for {stack['StackStatus']} left by an earlier attempt")
            stack = await self._wait(stack["StackId"])
        if stack and stack["StackStatus"] in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
            log.append(f"replacing {name} ({stack['StackStatus']} cannot be updated)")
            await self._aws("delete_stack", StackName=stack["StackId"])
            await self._wait(stack["StackId"])
            stack = None
        if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
            stack_id = (await self._aws("create_stack", **request))["StackId"]
            log.append(f"creating {name}")
        else:
            stack_id = stack["StackId"]
            try:
                await self._aws("update_stack", **request)
                log.append(f"updating {name}")
            except ApplicationError as exc:
                if "No updates are to be performed" not in exc.message:
                    raise
                # The stack already runs this template (even after an earlier update rolled back).
                log.append(f"{name} is up to date")
        stack = await self._wait(stack_id)
        if not log[-1].endswith("is up to date"):
            await self._fail_unless_ok(stack)
        outputs = {
            "stack_id": stack["StackId"],
            "status": stack["StackStatus"],
            "outputs": {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs") or []},
        }
        return StepResult(outputs=outputs, log=log)

    @activity.defn(name="aws.cloudformation.delete_stack")
    async def delete_stack(self, step: StepInput) -> StepResult:
        name = str(step.params.get("stack_name") or "")
        if not name:
            raise bad_params("aws.cloudformation.delete_stack needs stack_name")
        stack = await self._describe(name)
        if stack is None:
            return StepResult(
                outputs={"stack_id": None, "status": "DELETE_COMPLETE"}, log=[f"{name} does not exist"]
            )
        check_owned(stack, step, "delete")
        await self._aws("delete_stack", StackName=stack["StackId"])
        stack = await self._wait(stack["StackId"])
        await self._fail_unless_ok(stack)
        return StepResult(
            outputs={"stack_id": stack["StackId"], "status": stack["StackStatus"]}, log=[f"deleted {name}"]
        )

"""AWS as a data source (boto3): CloudFormation stacks, Lambda functions, S3 buckets, ECS services.

``config.regions`` lists the regions to read (default: the worker's region); each item gets
``__Region`` as Port Ocean's AWS integration does, and timestamps become ISO 8601 text. Each
page is one call with the operation's own next token; the cursor names the region (and the ECS
cluster) and the token. boto3 blocks, so calls run in a thread. Credentials are boto3's own
(environment, profile, instance role); ``GANTRY_AWS_ENDPOINT_URL`` points it at moto or LocalStack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from activities.cloud import aws_error, aws_region
from activities.errors import bad_params
from activities.sources.paging import Json, Page, jsonable, nested, unknown_kind

# kind: (boto3 service, operation, list key, request token, response token, page-size param, size)
_LISTS: dict[str, tuple[str, str, str, str, str, str | None, int]] = {
    "cloudformation-stack": (
        "cloudformation",
        "describe_stacks",
        "Stacks",
        "NextToken",
        "NextToken",
        None,
        0,
    ),
    "lambda-function": ("lambda", "list_functions", "Functions", "Marker", "NextMarker", "MaxItems", 50),
    "s3-bucket": (
        "s3",
        "list_buckets",
        "Buckets",
        "ContinuationToken",
        "ContinuationToken",
        "MaxBuckets",
        100,
    ),
}
ECS_DESCRIBE = 10  # describe_services takes at most 10 services

ClientFactory = Callable[[str, str], Any]


class AwsSource:
    vendor = "aws"
    kinds = frozenset(_LISTS) | {"ecs-service"}

    def __init__(self, clients: ClientFactory) -> None:
        self._clients = clients  # (service, region) -> a boto3 client

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        regions = _regions(config)
        if kind == "s3-bucket":  # one global listing
            regions = regions[:1]
        if kind in _LISTS:
            return await nested(regions, cursor, lambda region, token: self._listed(kind, region, token))
        if kind == "ecs-service":
            if "clusters" not in memo:
                memo["clusters"] = [f"{r} {arn}" for r in regions for arn in await self._clusters(r)]
            return await nested(memo["clusters"], cursor, self._services)
        raise unknown_kind(self, kind)

    async def _call(self, service: str, region: str, operation: str, **kwargs: Any) -> Json:
        client = self._clients(service, region)
        try:
            return dict(await asyncio.to_thread(getattr(client, operation), **kwargs))
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise aws_error(exc) from exc

    async def _listed(self, kind: str, region: str, token: str) -> Page:
        service, operation, key, token_in, token_out, size_param, size = _LISTS[kind]
        kwargs: Json = {token_in: token} if token else {}
        if size_param:
            kwargs[size_param] = size
        body = await self._call(service, region, operation, **kwargs)
        items = [_item(raw, region) for raw in body.get(key) or []]
        return Page(items, body.get(token_out) or None)

    async def _clusters(self, region: str) -> list[str]:
        arns: list[str] = []
        token = ""
        while True:
            body = await self._call("ecs", region, "list_clusters", **({"nextToken": token} if token else {}))
            arns += body.get("clusterArns") or []
            token = body.get("nextToken") or ""
            if not token:
                return arns

    async def _services(self, parent: str, token: str) -> Page:
        region, cluster = parent.split(" ", 1)
        kwargs: Json = {"cluster": cluster, "maxResults": ECS_DESCRIBE}
        if token:
            kwargs["nextToken"] = token
        listed = await self._call("ecs", region, "list_services", **kwargs)
        arns = listed.get("serviceArns") or []
        items: list[Any] = []
        for start in range(0, len(arns), ECS_DESCRIBE):
            chunk = arns[start : start + ECS_DESCRIBE]
            described = await self._call("ecs", region, "describe_services", cluster=cluster, services=chunk)
            items += [_item(raw, region) for raw in described.get("services") or []]
        return Page(items, listed.get("nextToken") or None)


def _regions(config: Json) -> list[str]:
    regions = config.get("regions") or ([aws_region()] if aws_region() else [])
    if not isinstance(regions, list) or not regions or not all(isinstance(r, str) and r for r in regions):
        raise bad_params("an aws data source needs config.regions (a list of region names) or AWS_REGION")
    return list(regions)


def _item(raw: Json, region: str) -> Json:
    return {**jsonable({k: v for k, v in raw.items() if k != "ResponseMetadata"}), "__Region": region}

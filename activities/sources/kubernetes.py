"""Kubernetes as a data source (the official ``kubernetes`` client): namespaces, deployments,
services, pods.

The cluster is the kubeconfig (``GANTRY_KUBERNETES_KUBECONFIG``, context
``GANTRY_KUBERNETES_CONTEXT``) or, without one, the in-cluster service account. Items are the
API server's JSON as is (camelCase, as ``kubectl get -o json`` shows it), each with
``cluster_name`` (``config.cluster_name``, default the context's name) so mappings can tell
clusters apart as Ocean's ``env.CLUSTER_NAME`` does. Pages are the API's ``limit`` and
``continue``; a continue token that expired while the worker was down (410) restarts the list.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError
from urllib3.exceptions import HTTPError

from activities.errors import BENIGN, network_reason, unreachable
from activities.sources.paging import Json, Page, unknown_kind
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR

LIMIT = 200
_GONE = 410
# kind: (API group class, list operation across namespaces)
_LISTS = {
    "namespace": (CoreV1Api, "list_namespace"),
    "deployment": (AppsV1Api, "list_deployment_for_all_namespaces"),
    "service": (CoreV1Api, "list_service_for_all_namespaces"),
    "pod": (CoreV1Api, "list_pod_for_all_namespaces"),
}


class KubernetesSource:
    vendor = "kubernetes"
    kinds = frozenset(_LISTS)

    def __init__(self, api_client: ApiClient, cluster_name: str) -> None:
        self._api = api_client
        self._cluster_name = cluster_name

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        if kind not in _LISTS:
            raise unknown_kind(self, kind)
        cluster = str(config.get("cluster_name") or self._cluster_name)
        try:
            body = await self._list(kind, cursor)
        except ApiException as exc:
            if exc.status != _GONE or not cursor:
                raise kubernetes_error(exc) from exc
            cursor = ""  # the continue token expired: list again from the start
            body = await self._list(kind, cursor)
        items = [{**item, "cluster_name": cluster} for item in body.get("items") or []]
        return Page(items, (body.get("metadata") or {}).get("continue") or None, fetched_with=cursor)

    async def _list(self, kind: str, cursor: str) -> Json:
        group, operation = _LISTS[kind]
        kwargs: dict[str, Any] = {"limit": LIMIT, "_preload_content": False, "_request_timeout": 30}
        if cursor:
            kwargs["_continue"] = cursor
        call = getattr(group(self._api), operation)
        try:
            response = await asyncio.to_thread(call, **kwargs)
        except HTTPError as exc:
            host = self._api.configuration.host
            raise unreachable("Kubernetes", network_reason(exc), host) from exc
        return dict(json.loads(response.data))


def kubernetes_error(exc: ApiException) -> ApplicationError:
    status = int(exc.status or 500)
    message = f"Kubernetes {status}: {exc.reason}"
    if status >= 500 or status in (408, 429):
        return ApplicationError(message, {"status": status}, type=VENDOR_SERVER_ERROR, category=BENIGN)
    return ApplicationError(
        message, {"status": status}, type=VENDOR_CLIENT_ERROR, non_retryable=True, category=BENIGN
    )

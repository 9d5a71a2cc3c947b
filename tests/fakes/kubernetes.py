"""Fake Kubernetes API server: the list paths the official client calls for namespaces,
deployments, services and pods, paged with ``limit`` and opaque ``continue`` tokens, bearer-token
auth; ``kubeconfig(path)`` writes a kubeconfig pointing at it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.paged import PagedVendor

# listing: (path, list kind, apiVersion)
LISTS = {
    "namespaces": ("/api/v1/namespaces", "NamespaceList", "v1"),
    "deployments": ("/apis/apps/v1/deployments", "DeploymentList", "apps/v1"),
    "services": ("/api/v1/services", "ServiceList", "v1"),
    "pods": ("/api/v1/pods", "PodList", "v1"),
}


class FakeKubernetes(PagedVendor):
    token = "kube-sources-test"
    context = "fake-cluster"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.objects: dict[str, list[dict[str, Any]]] = {name: [] for name in LISTS}

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "gantry", "user": {"token": self.token}}],
            "contexts": [{"name": self.context, "context": {"cluster": "fake", "user": "gantry"}}],
            "current-context": self.context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def add_namespace(self, name: str) -> None:
        self.objects["namespaces"].append(
            {
                "metadata": {"name": name, "uid": f"ns-{name}", "labels": {"team": "platform"}},
                "status": {"phase": "Active"},
            }
        )

    def add_deployment(self, namespace: str, name: str, replicas: int = 2) -> None:
        self.objects["deployments"].append(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": f"dep-{namespace}-{name}"},
                "spec": {
                    "replicas": replicas,
                    "template": {
                        "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:1.0"}]}
                    },
                },
                "status": {"availableReplicas": replicas, "readyReplicas": replicas},
            }
        )

    def add_service(self, namespace: str, name: str) -> None:
        self.objects["services"].append(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": f"svc-{namespace}-{name}"},
                "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
            }
        )

    def add_pod(self, namespace: str, name: str) -> None:
        self.objects["pods"].append(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": f"pod-{namespace}-{name}"},
                "spec": {"nodeName": "node-1"},
                "status": {"phase": "Running"},
            }
        )

    def add_routes(self, app: FastAPI) -> None:
        for listing, (route, kind, version) in LISTS.items():
            app.add_api_route(route, self._lister(listing, kind, version), methods=["GET"])

    def _lister(self, listing: str, kind: str, version: str) -> Any:
        async def listed(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse(
                    {"kind": "Status", "code": 401, "message": "Unauthorized"}, status_code=401
                )
            limit = int(request.query_params.get("limit") or 500)
            token = request.query_params.get("continue")
            offset = int(base64.b64decode(token).decode()) if token else 0
            scripted = await self.intercept(listing, offset // limit + 1)
            if scripted is not None:
                return scripted
            items = self.objects[listing]
            chunk = items[offset : offset + limit]
            following = offset + limit
            metadata: dict[str, Any] = {"resourceVersion": "12345"}
            if following < len(items):
                metadata["continue"] = base64.b64encode(str(following).encode()).decode()
            return JSONResponse({"kind": kind, "apiVersion": version, "metadata": metadata, "items": chunk})

        return listed

"""Fake GitHub REST API of one organisation, for data-source syncs: repositories, pull requests,
workflow runs, teams and file contents, in GitHub's JSON shapes, paged with ``per_page``/``page``
and ``Link: <...>; rel="next"`` (absolute URLs, as GitHub sends them)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.paged import PagedVendor, window


class FakeGitHubOrg(PagedVendor):
    token = "ghp-sources-test"
    org = "acme"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.repos: list[dict[str, Any]] = []
        self.pulls: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.teams: list[dict[str, Any]] = []
        self.files: dict[tuple[str, str], str] = {}  # (full_name, path) -> text

    def add_repo(self, name: str, **fields: Any) -> dict[str, Any]:
        full = f"{self.org}/{name}"
        repo = {
            "id": 1000 + len(self.repos),
            "node_id": f"R_{name}",
            "name": name,
            "full_name": full,
            "private": False,
            "owner": {"login": self.org, "type": "Organization"},
            "html_url": f"https://github.example/{full}",
            "description": f"the {name} service",
            "language": "Python",
            "topics": ["payments"],
            "archived": False,
            "default_branch": "main",
            "visibility": "public",
            **fields,
        }
        self.repos.append(repo)
        return repo

    def add_repos(self, count: int) -> None:
        for n in range(count):
            self.add_repo(f"svc-{n:04d}")

    def add_pull(self, repo: str, number: int, **fields: Any) -> None:
        full = f"{self.org}/{repo}"
        self.pulls.setdefault(full, []).append(
            {
                "id": 5000 + number,
                "number": number,
                "title": f"Change {number}",
                "state": "open",
                "user": {"login": "alice"},
                "html_url": f"https://github.example/{full}/pull/{number}",
                "head": {"ref": f"feature-{number}"},
                "base": {"ref": "main", "repo": {"name": repo, "full_name": full}},
                "created_at": "2026-01-01T00:00:00Z",
                "merged_at": None,
                **fields,
            }
        )

    def add_run(self, repo: str, run_id: int, **fields: Any) -> None:
        full = f"{self.org}/{repo}"
        self.runs.setdefault(full, []).append(
            {
                "id": run_id,
                "name": "CI",
                "status": "completed",
                "conclusion": "success",
                "head_branch": "main",
                "html_url": f"https://github.example/{full}/actions/runs/{run_id}",
                "repository": {"name": repo, "full_name": full},
                "created_at": "2026-01-01T00:00:00Z",
                **fields,
            }
        )

    def add_team(self, slug: str) -> None:
        self.teams.append(
            {
                "id": 700 + len(self.teams),
                "name": slug.title(),
                "slug": slug,
                "description": f"team {slug}",
                "html_url": f"https://github.example/orgs/{self.org}/teams/{slug}",
            }
        )

    def add_file(self, repo: str, path: str, text: str) -> None:
        self.files[f"{self.org}/{repo}", path] = text

    def add_routes(self, app: FastAPI) -> None:
        async def paged(request: Request, listing: str, items: list[Any], key: str | None = None) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            page = int(request.query_params.get("page", "1"))
            size = min(int(request.query_params.get("per_page", "30")), 100)
            scripted = await self.intercept(listing, page)
            if scripted is not None:
                return scripted
            chunk, more = window(items, page, size)
            headers = {}
            if more:
                query = request.url.include_query_params(page=page + 1, per_page=size)
                headers["Link"] = f'<{query}>; rel="next"'
            body = {"total_count": len(items), key: chunk} if key else chunk
            return JSONResponse(body, headers=headers)

        @app.get("/orgs/{org}/repos")
        async def repos(org: str, request: Request) -> Response:
            found = sorted(self.repos, key=lambda r: r["full_name"]) if org == self.org else []
            return await paged(request, "repos", found)

        @app.get("/orgs/{org}/teams")
        async def teams(org: str, request: Request) -> Response:
            return await paged(request, "teams", self.teams if org == self.org else [])

        @app.get("/repos/{owner}/{repo}/pulls")
        async def pulls(owner: str, repo: str, request: Request) -> Response:
            return await paged(request, f"pulls:{repo}", self.pulls.get(f"{owner}/{repo}", []))

        @app.get("/repos/{owner}/{repo}/actions/runs")
        async def runs(owner: str, repo: str, request: Request) -> Response:
            return await paged(request, f"runs:{repo}", self.runs.get(f"{owner}/{repo}", []), "workflow_runs")

        @app.get("/repos/{owner}/{repo}/contents/{path:path}")
        async def contents(owner: str, repo: str, path: str, request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            text = self.files.get((f"{owner}/{repo}", path))
            if text is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            raw = text.encode()
            return JSONResponse(
                {
                    "type": "file",
                    "encoding": "base64",
                    "size": len(raw),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "content": base64.encodebytes(raw).decode(),
                    "html_url": f"https://github.example/{owner}/{repo}/blob/main/{path}",
                }
            )

"""Catalog files in git as a data source: ``catalog-info.yaml`` and ``gantry.yaml`` through GitHub.

Each page is one page of ``config.org``'s repositories; for each repository the files named
by ``config.paths`` (default ``catalog-info.yaml`` and ``gantry.yaml``) are read through the
contents API. Every YAML document is one item ``{"repository", "path", "url", "document"}``;
the catalog turns it into an entity with the descriptor converter. A file that is not valid
YAML is one item with ``document: null`` and ``error`` saying why, so the catalog records it as
that item's error and the sync goes on. YAML aliases are refused (a few lines of aliases can
expand to gigabytes), as are files over ``MAX_FILE_BYTES``.

A push webhook's sync reads only the repositories it names (:meth:`FilesSource.repository_page`,
one repository per page), and never a repository outside ``config.org``: the worker's token
reads what the source is about, whatever a delivery names.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import yaml

from activities.sources.github import GitHubSource
from activities.sources.paging import Json, Page, jsonable, required
from activities.urls import path, segment, segments

DEFAULT_PATHS = ["catalog-info.yaml", "gantry.yaml"]
FILE_KIND = "file"
MAX_FILE_BYTES = 1024 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not accepted", mark)
        return super().compose_node(parent, index)


def documents(text: str) -> list[Any]:
    """The YAML documents of ``text`` (empty ones left out); yaml.YAMLError when it is not YAML."""
    return [doc for doc in yaml.load_all(text, Loader=_NoAliasLoader) if doc is not None]


def _paths(config: Json) -> list[str]:
    paths = config.get("paths") or DEFAULT_PATHS
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        return DEFAULT_PATHS
    return paths


class FilesSource:
    vendor = "files"
    # Every resource of a files source reads the same files, whatever its kind is called;
    # ``file`` is the documented name.
    kinds = frozenset({FILE_KIND})

    def __init__(self, github: GitHubSource) -> None:
        self.github = github

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        org = required(config, "org", self.vendor)
        paths = _paths(config)
        url = cursor or f"{path('orgs', org)}/repos"
        repositories = await self.github.linked(url, None, {"type": "all", "sort": "full_name"})
        items: list[Any] = []
        for repository in repositories.items:
            if repository.get("archived"):
                continue
            for file_path in paths:
                items += await self._file_items(repository, file_path)
        return Page(items, repositories.next)

    async def repository_page(self, config: Json, repositories: list[str], cursor: str) -> Page:
        """The catalog files of one of ``repositories`` (``owner/name``; the cursor is its index).
        A repository of another organisation than ``config.org`` is not read."""
        org = required(config, "org", self.vendor)
        index = int(cursor or 0)
        name = repositories[index] if index < len(repositories) else ""
        owner, _, repo = name.partition("/")
        items: list[Any] = []
        if owner.lower() == org.lower() and repo.strip(".") and "/" not in repo:
            for file_path in _paths(config):
                items += await self._file_items({"full_name": name}, file_path)
        return Page(items, str(index + 1) if index + 1 < len(repositories) else None)

    async def _file_items(self, repository: Json, file_path: str) -> list[Json]:
        name = str(repository["full_name"])
        owner, repo = name.split("/", 1)
        url = f"/repos/{segment(owner)}/{segment(repo)}/contents/{'/'.join(segments(file_path))}"
        response = await self.github.http.get_found(url)
        if response is None:
            return []
        body = response.json()
        where = {"repository": name, "path": file_path, "url": body.get("html_url") or ""}
        if not isinstance(body, dict) or body.get("type", "file") != "file":
            return [{**where, "document": None, "error": f"{file_path} is not a file"}]
        if int(body.get("size") or 0) > MAX_FILE_BYTES:
            return [{**where, "document": None, "error": f"{file_path} is over {MAX_FILE_BYTES} bytes"}]
        try:
            text = base64.b64decode(body.get("content") or "").decode("utf-8")
            parsed = documents(text)
        except (binascii.Error, UnicodeDecodeError) as exc:
            return [{**where, "document": None, "error": f"{file_path} cannot be read: {exc}"}]
        except yaml.YAMLError as exc:
            return [{**where, "document": None, "error": f"{file_path} is not valid YAML: {exc}"}]
        return [{**where, "document": jsonable(doc)} for doc in parsed]

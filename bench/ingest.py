"""Ingest benchmark: data-source syncs and webhook deliveries against the catalog's own writes.

``python -m bench.ingest [--items 100000] [--deliveries 5000] [--concurrency 16] [--out FILE]``

Each measurement runs the real API (uvicorn in a subprocess, as ``bench.catalog`` does) on a
fresh SQLite file holding the same blueprints: ``bench_repo`` (10 properties; relations to
``bench_system`` and ``bench_cluster``, whose 100 and 20 targets exist).

- **sync**: ``--items`` raw repository-like items POSTed in pages of 500 to
  ``/v1/data-sources/{id}/syncs/{sync}/items`` with the service token, as the worker sends them,
  selected and mapped (10 properties, 2 relations) by the catalog and written as the source;
  against the catalog's bulk upsert (``POST /v1/blueprints/bench_repo/entities/bulk?upsert=true``)
  of the very entities the mapping yields, in the same batches, into another fresh file.
  Target: ratio ≥ 0.5 (mapping costs no more than writing).
- **re-sync**: the same items again in a new sync, which changes nothing; its time against the
  first sync's. Target ≤ 0.3x, and it must write nothing: no entity row, entity audit record or
  event changes (checked in the database).
- **webhooks**: ``--deliveries`` GitHub-style signed deliveries (one new entity each) POSTed to
  ``/v1/webhooks/{id}`` with ``--concurrency`` in flight; accepted per second against a bare
  FastAPI endpoint that reads the body and answers 202 on the same uvicorn settings. Target
  ≥ 1,000/s. Then every delivery must be APPLIED (none lost, none failed, one entity each);
  applied per second counts from the first POST to the last delivery applied.

It prints one table and writes it as markdown to ``bench/results/ingest.md`` (or ``--out``); the exit status is
1 when a target is missed. Figures are wall-clock on this machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI, Request, Response
from sqlalchemy import create_engine, text

from bench.catalog import Row, uvicorn_server
from bench.common import ADMIN_TOKEN, SERVICE_TOKEN
from catalog.migrate import upgrade
from catalog.sources.definitions import DataSourceIn
from catalog.sources.mapping import map_items

RESULTS = Path(__file__).parent / "results" / "ingest.md"
PAGE = 500  # the worker's page of raw items
SYSTEMS, CLUSTERS = 100, 20
LANGUAGES = ["Python", "Go", "Java", "TypeScript"]
SYNC_SOURCE, HOOK_SOURCE = "bench_repos", "bench_hooks"
HOOK_SECRET_ENV = "GANTRY_WEBHOOK_BENCH_SECRET"
HOOK_SECRET = "bench-webhook-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}

REPO_BLUEPRINT: dict[str, Any] = {
    "identifier": "bench_repo",
    "title": "Bench repository",
    "schema": {
        "properties": {
            "language": {"type": "string", "enum": [lang.lower() for lang in LANGUAGES]},
            "stars": {"type": "integer", "minimum": 0},
            "archived": {"type": "boolean"},
            "private": {"type": "boolean"},
            "url": {"type": "string", "format": "url"},
            "description": {"type": "string", "maxLength": 2000},
            "topics": {"type": "array", "items": {"type": "string"}},
            "created": {"type": "string", "format": "date-time"},
            "default_branch": {"type": "string"},
            "size_kb": {"type": "integer", "minimum": 0},
        },
        "required": ["language"],
    },
    "relations": {
        "system": {"target": "bench_system", "many": False, "required": False},
        "cluster": {"target": "bench_cluster", "many": False, "required": False},
    },
}

# Port Ocean's resource shape, as a GitHub integration's port-app-config.yml would say it.
SYNC_SOURCE_BODY = yaml.safe_load(
    f"""
identifier: {SYNC_SOURCE}
kind: github
resources:
  - kind: repository
    selector: {{query: '.archived == false'}}
    port:
      entity:
        mappings:
          identifier: .name
          title: .full_name
          blueprint: '"bench_repo"'
          properties:
            language: '.language | ascii_downcase'
            stars: .stargazers_count
            archived: .archived
            private: .private
            url: .html_url
            description: .description
            topics: .topics
            created: .created_at
            default_branch: .default_branch
            size_kb: .size
          relations:
            system: '.custom_properties.system'
            cluster: '.custom_properties.cluster'
"""
)

HOOK_SOURCE_BODY = yaml.safe_load(
    f"""
identifier: {HOOK_SOURCE}
kind: webhook
security: {{secret_env: {HOOK_SECRET_ENV}}}
resources:
  - kind: repository
    filter: '.headers["x-github-event"] == "repository"'
    port:
      entity:
        mappings:
          identifier: .body.repository.name
          blueprint: '"bench_repo"'
          properties:
            language: '.body.repository.language | ascii_downcase'
            url: .body.repository.html_url
            stars: .body.repository.stargazers_count
          relations:
            system: '.body.repository.custom_properties.system'
"""
)


def raw_item(i: int, prefix: str = "repo") -> dict[str, Any]:
    """A repository as GitHub's REST API lists it (the fields the mapping reads, and more)."""
    name = f"{prefix}-{i:07d}"
    return {
        "id": 10_000_000 + i,
        "name": name,
        "full_name": f"acme/{name}",
        "owner": {"login": "acme", "type": "Organization"},
        "private": i % 3 == 0,
        "archived": False,
        "html_url": f"https://github.com/acme/{name}",
        "description": f"Repository {i} of the benchmark.",
        "language": LANGUAGES[i % len(LANGUAGES)],
        "stargazers_count": i % 997,
        "topics": ["bench", f"group-{i % 10}"],
        "created_at": f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}T10:00:00Z",
        "default_branch": "main",
        "size": i % 50_000,
        "visibility": "private" if i % 3 == 0 else "public",
        "custom_properties": {"system": f"sys-{i % SYSTEMS:03d}", "cluster": f"cl-{i % CLUSTERS:02d}"},
    }


# ---- the stack ------------------------------------------------------------------------------


@contextmanager
def api_on_fresh_catalog(workdir: Path) -> Iterator[tuple[httpx.Client, str]]:
    """The API on a new SQLite file with the bench blueprints and their relation targets; an
    admin client and the database URL."""
    url = f"sqlite:///{workdir / f'catalog-{uuid.uuid4().hex[:8]}.db'}"
    upgrade(url)
    env = {
        "GANTRY_DATABASE_URL": url,
        "GANTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GANTRY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GANTRY_DATA_DIR": str(workdir),
        HOOK_SECRET_ENV: HOOK_SECRET,
    }
    with uvicorn_server("api.app:create_app", env) as base, httpx.Client(base_url=base, timeout=300) as http:
        for identifier, count, prefix in (
            ("bench_system", SYSTEMS, "sys"),
            ("bench_cluster", CLUSTERS, "cl"),
        ):
            _ok(
                http.post(
                    "/v1/blueprints", headers=ADMIN, json={"identifier": identifier, "title": identifier}
                )
            )
            targets = [{"identifier": f"{prefix}-{n:0{3 if prefix == 'sys' else 2}d}"} for n in range(count)]
            _bulk(http, identifier, targets)
        _ok(http.post("/v1/blueprints", headers=ADMIN, json=REPO_BLUEPRINT))
        yield http, url


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
        )
    return response.json() if response.content else None


def _bulk(http: httpx.Client, blueprint: str, entities: list[dict[str, Any]]) -> None:
    answer = _ok(
        http.post(
            f"/v1/blueprints/{blueprint}/entities/bulk",
            params={"upsert": "true"},
            headers=ADMIN,
            json={"entities": entities},
        )
    )
    failed = [r for r in answer["results"] if r.get("error")]
    if failed:
        raise RuntimeError(f"bulk upsert refused {len(failed)} entities, e.g. {failed[0]}")


# ---- sync against bulk upsert -----------------------------------------------------------------


def mapped_entities(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the sync's mapping makes of ``items``: the bulk baseline writes exactly these."""
    resource = DataSourceIn.model_validate(SYNC_SOURCE_BODY).resources[0]
    entities: list[dict[str, Any]] = []
    for start in range(0, len(items), PAGE):
        mapping = map_items(resource, 0, items[start : start + PAGE])
        if mapping.errors:
            raise RuntimeError(f"the bench mapping failed: {mapping.errors[0]}")
        entities += [m.entity for m in mapping.entities]
    return entities


def bulk_upsert(http: httpx.Client, entities: list[dict[str, Any]]) -> float:
    """Seconds to write ``entities`` through the bulk route, a page at a time."""
    started = time.perf_counter()
    for start in range(0, len(entities), PAGE):
        _bulk(http, "bench_repo", entities[start : start + PAGE])
    return time.perf_counter() - started


def sync(http: httpx.Client, items: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    """Seconds for one whole sync as the worker drives it (open, every page, complete) and its
    counts."""
    sync_id = f"bench-{uuid.uuid4().hex[:8]}"
    base = f"/v1/data-sources/{SYNC_SOURCE}/syncs/{sync_id}"
    started = time.perf_counter()
    _ok(http.put(base, headers=SERVICE, json={"trigger": "API"}))
    for start in range(0, len(items), PAGE):
        page = {"resource": 0, "page": f"cursor-{start}", "items": items[start : start + PAGE]}
        _ok(http.post(f"{base}/items", headers=SERVICE, json=page))
    record = _ok(http.post(f"{base}/complete", headers=SERVICE, json={"status": "SUCCESS"}))
    elapsed = time.perf_counter() - started
    if record["status"] != "SUCCESS" or record["errors"]:
        raise RuntimeError(f"the bench sync did not succeed: {record}")
    return elapsed, record["counts"]


def writes_so_far(url: str) -> tuple[Any, ...]:
    """What a sync that changes nothing must leave as it was: entity rows and their newest
    update, entity audit records, events."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            entities = conn.execute(text("SELECT count(*), max(updated_at) FROM entities")).one()
            audit = conn.execute(
                text("SELECT count(*) FROM audit_log WHERE resource_type = 'entity'")
            ).scalar()
            events = conn.execute(text("SELECT count(*) FROM events")).scalar()
    finally:
        engine.dispose()
    return (*entities, audit, events)


@dataclass
class SyncFigures:
    bulk_rate: float
    sync_rate: float
    first_seconds: float
    resync_seconds: float


def run_sync(count: int, workdir: Path) -> SyncFigures:
    items = [raw_item(i) for i in range(count)]
    entities = mapped_entities(items)
    last = f"/v1/blueprints/bench_repo/entities/{entities[-1]['identifier']}"
    with api_on_fresh_catalog(workdir) as (http, _url):
        bulk_seconds = bulk_upsert(http, entities)
        written = _ok(http.get(last, headers=ADMIN))
    print(f"bulk upsert: {count / bulk_seconds:,.0f} entities/s", file=sys.stderr)
    with api_on_fresh_catalog(workdir) as (http, url):
        _ok(http.post("/v1/data-sources", headers=ADMIN, json=SYNC_SOURCE_BODY))
        first, counts = sync(http, items)
        if (counts["seen"], counts["created"], counts["failed"]) != (count, count, 0):
            raise RuntimeError(f"the first sync did not create every entity: {counts}")
        synced = _ok(http.get(last, headers=ADMIN))
        if [synced[k] for k in ("title", "properties", "relations")] != [
            written[k] for k in ("title", "properties", "relations")
        ]:
            raise RuntimeError(f"the sync wrote {synced}, the bulk upsert {written}")
        print(f"sync: {count / first:,.0f} items/s", file=sys.stderr)
        before = writes_so_far(url)
        again, counts = sync(http, items)
        if counts["unchanged"] != count or writes_so_far(url) != before:
            raise RuntimeError(f"the re-sync wrote something: {counts}")
        print(f"re-sync: {count / again:,.0f} items/s", file=sys.stderr)
    return SyncFigures(count / bulk_seconds, count / first, first, again)


# ---- webhook deliveries -----------------------------------------------------------------------


def bare_receiver() -> FastAPI:
    """The webhook baseline: FastAPI and uvicorn reading the body and answering 202."""
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted": true}', status_code=202, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def signed_deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    deliveries = []
    for i in range(count):
        body = json.dumps({"action": "created", "repository": raw_item(i, "hook")}).encode()
        signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "repository",
            "X-GitHub-Delivery": f"bench-{i}",
            "X-Hub-Signature-256": signature,
        }
        deliveries.append((body, headers))
    return deliveries


async def post_all(url: str, deliveries: list[tuple[bytes, dict[str, str]]], concurrency: int) -> float:
    """Seconds to have every delivery answered 202, over ``concurrency`` keep-alive connections.

    Requests are written as raw HTTP/1.1 on asyncio streams: a full HTTP client costs more CPU
    per request than the endpoints measured here, and on a small machine it would be the
    bottleneck of ours and of the baseline alike."""
    target = httpx.URL(url)
    host, port, path = target.host, target.port or 80, target.raw_path.decode()
    requests = [_request(host, port, path, body, headers) for body, headers in deliveries]
    queue = iter(requests)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in queue:
                writer.write(request)
                status = await _response_status(reader)
                if status != 202:
                    raise RuntimeError(f"a delivery to {url} answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return time.perf_counter() - started


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read one response (status line, headers, a Content-Length body); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("the bench client reads Content-Length bodies only")
    await reader.readexactly(length)
    return int(status_line.split()[1])


def delivery_statuses(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")).all()
    finally:
        engine.dispose()
    return {status: n for status, n in rows}


@dataclass
class HookFigures:
    accepted_rate: float
    bare_rate: float
    applied_rate: float


def run_webhooks(count: int, concurrency: int, workdir: Path, timeout: float = 1800) -> HookFigures:
    deliveries = signed_deliveries(count)
    with uvicorn_server("bench.ingest:bare_receiver", {}) as base:
        bare = asyncio.run(post_all(f"{base}/hook", deliveries, concurrency))
    with api_on_fresh_catalog(workdir) as (http, url):
        _ok(http.post("/v1/data-sources", headers=ADMIN, json=HOOK_SOURCE_BODY))
        started = time.perf_counter()
        hook = f"{str(http.base_url).rstrip('/')}/v1/webhooks/{HOOK_SOURCE}"
        accepted = asyncio.run(post_all(hook, deliveries, concurrency))
        print(f"webhooks: {count / accepted:,.0f} accepted/s (bare {count / bare:,.0f}/s)", file=sys.stderr)
        while (statuses := delivery_statuses(url)).get("PENDING"):
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"deliveries still pending after {timeout:.0f}s: {statuses}")
            time.sleep(0.2)
        applied = time.perf_counter() - started
        entities = _ok(http.get("/v1/blueprints/bench_repo/entities", headers=ADMIN, params={"limit": 1}))
    if statuses != {"APPLIED": count}:
        raise RuntimeError(f"not every delivery was applied: {statuses}")
    if not entities["items"]:
        raise RuntimeError("the deliveries made no entity")
    print(f"webhooks: {count / applied:,.0f} applied/s", file=sys.stderr)
    return HookFigures(count / accepted, count / bare, count / applied)


# ---- report -----------------------------------------------------------------------------------


def rows_of(figures: SyncFigures, hooks: HookFigures) -> list[Row]:
    return [
        Row("sync (10 properties, 2 relations)", "sqlite", figures.sync_rate, figures.bulk_rate,
            "entities/s", "ratio ≥ 0.5", lambda _ours, ratio: ratio >= 0.5),
        Row("re-sync, nothing changed", "sqlite", figures.resync_seconds, figures.first_seconds,
            "s", "ratio ≤ 0.3, nothing written", lambda _ours, ratio: ratio <= 0.3),
        Row("webhook deliveries accepted", "sqlite", hooks.accepted_rate, hooks.bare_rate,
            "deliveries/s", "≥ 1,000/s", lambda ours, _ratio: ours >= 1000),
        Row("webhook deliveries applied (all)", "sqlite", hooks.applied_rate, hooks.accepted_rate,
            "deliveries/s", "every one APPLIED", lambda _ours, _ratio: True),
    ]  # fmt: skip


def render(rows: list[Row], title: str) -> str:
    header = ["measurement", "db", "ours", "baseline", "ratio", "target"]
    body = []
    for row in rows:
        verdict = "" if row.met is None else (" ✓" if row.met(row.ours, row.ratio) else " ✗ MISSED")
        number = "{:,.0f} {}" if row.unit.endswith("/s") else "{:.2f} {}"
        ours, baseline = number.format(row.ours, row.unit), number.format(row.baseline, row.unit)
        body.append([row.measurement, row.db, ours, baseline, f"{row.ratio:.2f}x", row.target + verdict])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    baselines = (
        "Baselines: the catalog's bulk upsert of the entities the mapping yields, in the same pages of "
        f"{PAGE} (sync); the first sync (re-sync); a bare FastAPI endpoint on the same uvicorn settings "
        "(accepted); the accepted rate (applied: from the first POST until the last delivery was applied)."
    )
    return "\n".join([title, "", line(header), rule, *(line(r) for r in body), "", baselines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="raw items per sync (default 100000)")
    parser.add_argument("--deliveries", type=int, default=5000, help="webhook deliveries (default 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight (default 16)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"where to write the table (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    if args.items < PAGE or args.deliveries < 1 or args.concurrency < 1:
        parser.error(f"--items must be at least {PAGE}; --deliveries and --concurrency at least 1")
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as workdir:
        figures = run_sync(args.items, Path(workdir))
        hooks = run_webhooks(args.deliveries, args.concurrency, Path(workdir))
    rows = rows_of(figures, hooks)
    title = (
        f"Ingest benchmark, {args.items:,} items per sync, {args.deliveries:,} webhook deliveries "
        f"({args.concurrency} in flight), SQLite ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    table = render(rows, title)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    return 0 if all(r.met is None or r.met(r.ours, r.ratio) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Web portal benchmark: the pages of a 10,000-entity blueprint against a bare HTML route.

``python -m bench.web [--entities 10000] [--requests 200] [--cases table,filtered,scorecard,failing]``

The portal (on a temporary SQLite catalog) and a bare FastAPI route returning a constant HTML
page are both called in-process through Starlette's TestClient, so the client and the network
weigh the same on both sides. The portal's figure is the whole page: session lookup, the read
filter, the keyset query for the first 50 rows of the table, display names and the template.
The scorecard page (two rules over every entity) adds the level distribution, the rule pass
rates, the 30-day trend (the level history spread over the 30 days) and, with ``?rule=``, the entities failing that rule; the initiative
page (a target on it) its progress per team, the burn-down and the failing entities.
Target: p95 at most 100 ms. Writes ``bench/results/web.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient

from api.app import create_app
from bench.common import percentile, write_results
from bench.scorecards import spread_history
from catalog.audit import Actor
from catalog.db import utcnow
from catalog.identity.permissions import Principal
from catalog.initiatives import service as initiatives
from catalog.initiatives.service import InitiativeIn
from catalog.timefmt import format_instant
from config import Settings

ADMIN = "bench-admin-token-0123456789abcdef0123"
SCORECARD = {
    "identifier": "readiness",
    "title": "Readiness",
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_repo",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "top_tier",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "<=", "value": 1}]},
        },
    ],
}
CASES = {
    "table": ("entity table, first page", "/catalog/service", {}),
    "filtered": ("entity table, filter + sort", "/catalog/service", {"f": "language|=|go", "sort": "-tier"}),
    "scorecard": ("scorecard page", "/scorecards/service/readiness", {}),
    "failing": ("scorecard page, failing a rule", "/scorecards/service/readiness", {"rule": "top_tier"}),
    "initiative": ("initiative page", "/initiatives/ready", {}),
}


def timed(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def save_initiative(api: TestClient) -> None:
    """An initiative on the scorecard, saved as the API saves one (its deadline workflow needs
    Temporal: not here)."""
    body = InitiativeIn(
        identifier="ready",
        title="Ready",
        targets=[{"blueprint": "service", "scorecard": "readiness", "level": "Gold"}],
        starts_at=format_instant(utcnow() - timedelta(days=20)),
        deadline=format_instant(utcnow() + timedelta(days=30)),
    )
    with cast(Any, api.app).state.sessionmaker() as session:
        initiatives.save(session, body, Actor("admin"), Principal("admin", "admin"))
        session.commit()


def fetch(api: TestClient, path: str, params: Mapping[str, str]) -> None:
    api.get(path, params=params).raise_for_status()


def load(api: TestClient, batch: Sequence[Mapping[str, object]], auth: dict[str, str]) -> None:
    """One bulk write, sent again while the API answers 503 (SQLite busy: the relay committed
    while the write was reading), as a client honouring ``Retry-After`` would."""
    for _ in range(10):
        response = api.post("/v1/blueprints/service/entities/bulk", json={"entities": batch}, headers=auth)
        if response.status_code != 503:
            response.raise_for_status()
            return
        time.sleep(0.2)
    response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := [c for c in cases if c not in CASES]:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    data = Path(tempfile.mkdtemp(prefix="gantry-bench-web-"))
    settings = Settings(database_url=f"sqlite:///{data / 'catalog.db'}", data_dir=data, admin_token=ADMIN)
    with TestClient(create_app(settings)) as api:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        blueprint = {
            "identifier": "service",
            "title": "Service",
            "schema": {
                "properties": {
                    "language": {"type": "string", "enum": ["python", "go", "java"]},
                    "tier": {"type": "integer"},
                    "repo": {"type": "string", "format": "url"},
                    "on_call": {"type": "string"},
                    "notes": {"type": "string"},
                }
            },
        }
        api.post("/v1/blueprints", json=blueprint, headers=auth).raise_for_status()
        for start in range(0, args.entities, 1000):
            batch = [
                {
                    "identifier": f"svc-{i:06}",
                    "title": f"Service {i}",
                    "properties": {
                        "language": ("python", "go", "java")[i % 3],
                        "tier": i % 4,
                        "repo": f"https://git.example/svc-{i}",
                        "on_call": f"user{i % 50}",
                        "notes": "x" * 40,
                    },
                }
                for i in range(start, min(start + 1000, args.entities))
            ]
            load(api, batch, auth)
        api.post("/v1/blueprints/service/scorecards", json=SCORECARD, headers=auth).raise_for_status()
        # As a month of grading leaves it (not every change minutes old, as the grading just made).
        spread_history(cast(Any, api.app).state.sessionmaker, timedelta(days=30))
        save_initiative(api)
        signed = api.post("/login", data={"token": ADMIN}, follow_redirects=False)
        assert signed.status_code == 303
        rows = []
        for case in cases:
            name, path, params = CASES[case]
            for _ in range(5):
                api.get(path, params=params).raise_for_status()
            rows.append((name, timed(partial(fetch, api, path, params), args.requests)))
    bare = FastAPI()
    page = "<!doctype html><html><body><table>" + "<tr><td>x</td></tr>" * 50 + "</table></body></html>"

    @bare.get("/page", response_class=HTMLResponse)
    def bare_page() -> str:
        return page

    with TestClient(bare) as client:
        for _ in range(5):
            client.get("/page")
        baseline = timed(lambda: client.get("/page").raise_for_status(), args.requests)
    rows.append(("bare FastAPI HTML route", baseline))
    base95 = percentile(baseline, 95)
    lines = ["| case | p50 ms | p95 ms | p95 vs bare |", "|---|---|---|---|"]
    for name, samples in rows:
        p95 = percentile(samples, 95)
        lines.append(f"| {name} | {percentile(samples, 50):.1f} | {p95:.1f} | {p95 / base95:.1f}x |")
    table_md = "\n".join(lines)
    print(table_md)
    write_results(
        Path(__file__).parent / "results" / "web.md",
        f"# Web portal: {args.entities} entities, {args.requests} requests per case (SQLite, in-process)",
        table_md,
        "Target: every page's p95 at most 100 ms.",
    )


if __name__ == "__main__":
    main()

"""Catalog benchmark: the service layer and the HTTP API against their raw baselines.

``python -m bench.catalog [--entities 100000] [--db sqlite|postgres|both]``

For each database (a temporary SQLite file; a fresh PostgreSQL database, dropped afterwards):

- bulk upsert through ``catalog.entities.service.write_entities`` (validation, reference checks, audit),
  batches of 1000, one transaction each, as ``POST .../entities/bulk`` does, against a raw DBAPI
  ``executemany`` INSERT of the same rows into a freshly migrated ``entities`` table;
- search (3 rules, limit 50) through the API served by uvicorn in a subprocess, against the very
  SQL statement the search compiles to, run directly on the same engine;
- a single entity GET through the API against a bare FastAPI endpoint returning a constant dict,
  served by uvicorn with the same settings;
- permissions: with the entities spread over 50 teams and a blueprint that lets only the owning
  teams read (``owned_by_team``), the same search and bulk upsert for a member of one team
  against an admin (target: within 1.2x). ``--only-permissions`` runs just these.

It prints one table and writes it as markdown to ``bench/results/catalog.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from bench.common import percentile
from catalog.audit import Actor
from catalog.blueprints.service import create_blueprint
from catalog.db import make_engine, make_sessionmaker, transaction, utcnow
from catalog.entities.service import Mode, write_entities
from catalog.identity.permissions import ADMIN as ADMIN_ROLE
from catalog.identity.permissions import MEMBER, Principal
from catalog.identity.service import create_team
from catalog.migrate import upgrade
from catalog.schemas import BlueprintIn, TeamIn

POSTGRES_ADMIN_URL = os.environ.get(
    "GANTRY_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RESULTS = Path(__file__).parent / "results" / "catalog.md"
BATCH = 1000
BLUEPRINT = "bench_service"
TEAM = "bench-team"
ADMIN = Actor("admin")
LANGUAGES = ["python", "go", "java", "rust"]

BLUEPRINT_BODY: dict[str, Any] = {
    "identifier": BLUEPRINT,
    "title": "Bench service",
    "schema": {
        "properties": {
            "language": {"type": "string", "enum": LANGUAGES},
            "tier": {"type": "integer", "minimum": 1, "maximum": 3},
            "repo": {"type": "string", "format": "url"},
            "score": {"type": "number", "minimum": 0, "maximum": 100},
            "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "contact": {"type": "string", "format": "email"},
            "launched_at": {"type": "string", "format": "date-time"},
            "description": {"type": "string", "format": "markdown", "maxLength": 2000},
            "owner_team": {"type": "string", "format": "team"},
        },
        "required": ["language", "tier"],
    },
}

SEARCH_BODY: dict[str, Any] = {
    "query": {
        "combinator": "and",
        "rules": [
            {"property": "$blueprint", "operator": "=", "value": BLUEPRINT},
            {"property": "language", "operator": "=", "value": "rust"},
            {"property": "tier", "operator": "<=", "value": 2},
        ],
    },
    "limit": 50,
}


@dataclass(frozen=True)
class SearchShape:
    """One search the benchmark measures: the request body, and the SQL a person would write by
    hand for the same page (same rows, same order) on each database."""

    name: str
    body: dict[str, Any]
    hand_sql: dict[str, str]


def _shape(rules: list[dict[str, Any]], sort: list[dict[str, str]] | None = None) -> dict[str, Any]:
    query = {
        "combinator": "and",
        "rules": [{"property": "$blueprint", "operator": "=", "value": BLUEPRINT}, *rules],
    }
    return {"query": query, "limit": 50, **({"sort": sort} if sort else {})}


_HAND = "SELECT * FROM entities WHERE blueprint = 'bench_service' AND "
SEARCH_SHAPES = [
    SearchShape(
        "3 rules",
        SEARCH_BODY,
        {
            "sqlite": _HAND + "json_extract(properties, '$.language') = 'rust'"
            " AND json_extract(properties, '$.tier') <= 2 ORDER BY id LIMIT 51",
            "postgresql": _HAND + """properties @> '{"language": "rust"}'"""
            " AND (properties->>'tier')::numeric <= 2 ORDER BY id LIMIT 51",
        },
    ),
    SearchShape(
        "by title, in",
        _shape(
            [{"property": "language", "operator": "in", "value": ["go", "rust"]}],
            [{"property": "title", "order": "asc"}],
        ),
        {
            "sqlite": _HAND + "json_extract(properties, '$.language') IN ('go', 'rust')"
            " ORDER BY title, id LIMIT 51",
            "postgresql": _HAND + "properties->>'language' IN ('go', 'rust')"
            ' ORDER BY title COLLATE "C", id LIMIT 51',
        },
    ),
    SearchShape(
        "by property desc",
        _shape(
            [{"property": "active", "operator": "=", "value": True}],
            [{"property": "score", "order": "desc"}],
        ),
        {
            "sqlite": _HAND + "json_extract(properties, '$.active') = 1"
            " ORDER BY json_extract(properties, '$.score') DESC, id LIMIT 51",
            "postgresql": _HAND + """properties @> '{"active": true}'"""
            " ORDER BY (properties->>'score')::numeric DESC, id LIMIT 51",
        },
    ),
    SearchShape(
        "contains, by identifier",
        _shape(
            [{"property": "tags", "operator": "contains", "value": "group-3"}],
            [{"property": "$identifier", "order": "asc"}],
        ),
        {
            "sqlite": _HAND + "EXISTS (SELECT 1 FROM json_each(properties, '$.tags') WHERE value = 'group-3')"
            " ORDER BY identifier, id LIMIT 51",
            "postgresql": _HAND + """properties @> '{"tags": ["group-3"]}'"""
            ' ORDER BY identifier COLLATE "C", id LIMIT 51',
        },
    ),
]


@dataclass
class Row:
    measurement: str
    db: str
    ours: float
    baseline: float
    unit: str
    target: str
    # a predicate on (ours, ratio); None when the row has no target
    met: Callable[[float, float], bool] | None = None

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")


# ---- data ------------------------------------------------------------------------------------


def make_entities(count: int) -> list[dict[str, Any]]:
    """``count`` valid entities of the bench blueprint, already in the catalog's stored form."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    entities = []
    for i in range(count):
        launched = start + timedelta(minutes=i)
        entities.append(
            {
                "identifier": f"svc-{i:07d}",
                "title": f"Service {i}",
                "team": [TEAM],
                "properties": {
                    "language": LANGUAGES[i % len(LANGUAGES)],
                    "tier": i % 3 + 1,
                    "repo": f"https://git.example.com/org/svc-{i}",
                    "score": (i * 7) % 100 + 0.5,
                    "active": i % 2 == 0,
                    "tags": ["bench", f"group-{i % 10}"],
                    "contact": f"owner{i % 50}@example.com",
                    "launched_at": launched.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "description": f"# Service {i}\nA service of the benchmark.",
                    "owner_team": TEAM,
                },
                "relations": {},
            }
        )
    return entities


def prepare_catalog(url: str) -> None:
    """Migrate ``url`` and create the bench team and blueprint."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            create_team(session, TeamIn(identifier=TEAM, title="Bench team"), ADMIN)
            create_blueprint(session, BlueprintIn.model_validate(BLUEPRINT_BODY), ADMIN)
    finally:
        engine.dispose()


# ---- databases -------------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of a new, empty database, removed afterwards."""
    if kind == "sqlite":
        path = workdir / f"catalog-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        return
    name = f"gantry_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---- bulk upsert -----------------------------------------------------------------------------


def bulk_through_service(engine: Engine, entities: list[dict[str, Any]]) -> float:
    """Entities per second written by ``write_entities``, one transaction per batch."""
    factory = make_sessionmaker(engine)
    analyzed_at = 0
    started = time.perf_counter()
    for start in range(0, len(entities), BATCH):
        with transaction(factory) as session:
            results = write_entities(
                session, BLUEPRINT, entities[start : start + BATCH], mode=Mode.UPSERT, actor=ADMIN, bulk=True
            )
        failed = [r for r in results if r.error is not None]
        if failed:
            raise RuntimeError(f"bench entity refused: {failed[0].identifier}: {failed[0].error}")
        written = start + BATCH
        if engine.dialect.name == "postgresql" and written >= 2 * analyzed_at:
            analyze(engine)
            analyzed_at = written
    return len(entities) / (time.perf_counter() - started)


def analyze(engine: Engine) -> None:
    """Refresh the planner's statistics, as autovacuum would (here each time the table doubled).

    Without statistics the planner takes ``identifier IN (500 values)`` for most of the table
    and the write core's look-up of existing entities becomes a sequential scan per batch, so an
    import into a fresh table slows down quadratically on a server whose autovacuum is off (the
    test server's is). The time is counted in the service's figure.
    """
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE entities")


def bulk_raw(engine: Engine, entities: list[dict[str, Any]]) -> float:
    """Entities per second written by a DBAPI ``executemany`` INSERT, one transaction per batch."""
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    columns = (
        "blueprint, identifier, title, team, properties, relations,"
        " created_at, updated_at, created_by, updated_by"
    )
    sql = f"INSERT INTO entities ({columns}) VALUES ({', '.join([mark] * 10)})"
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        started = time.perf_counter()
        for start in range(0, len(entities), BATCH):
            now = utcnow()
            stamp: Any = now.replace(tzinfo=None).isoformat(sep=" ") if sqlite else now
            rows = [
                (
                    BLUEPRINT,
                    e["identifier"],
                    e["title"],
                    json.dumps(e["team"]),
                    json.dumps(e["properties"]),
                    json.dumps(e["relations"]),
                    stamp,
                    stamp,
                    ADMIN.user,
                    ADMIN.user,
                )
                for e in entities[start : start + BATCH]
            ]
            cursor.executemany(sql, rows)
            conn.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
    finally:
        conn.close()
    return len(entities) / elapsed


# ---- HTTP ------------------------------------------------------------------------------------


def bare_app() -> FastAPI:
    """The HTTP baseline: FastAPI and uvicorn with nothing of Gantry behind them."""
    app = FastAPI()
    constant = {"identifier": "svc-0000042", "title": "Service 42", "blueprint": BLUEPRINT, "properties": {}}

    @app.get("/constant")
    def constant_entity() -> dict[str, Any]:
        return constant

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def uvicorn_server(factory: str, env: dict[str, str], pids: list[int] | None = None) -> Iterator[str]:
    """``factory`` served by uvicorn in a subprocess; yields its base URL (and adds the
    process id to ``pids`` when given)."""
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", factory, "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **env}, cwd=Path(__file__).parent.parent)
    if pids is not None:
        pids.append(process.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn {factory} exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn {factory} did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def latencies(call: Callable[[], Any], *, warmup: int, rounds: int) -> list[float]:
    """Milliseconds of ``rounds`` sequential calls, after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def drain_outbox(http: httpx.Client, timeout: float = 300) -> None:
    """Wait until the API's relay has delivered the bulk load's events: search and GET are
    measured in steady state, not while the relay works through 100,000 ENTITY_CREATED."""
    deadline = time.monotonic() + timeout
    while _expect(http.get("/v1/events", params={"delivered": "false", "limit": 1})).json()["items"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the outbox did not drain")
        time.sleep(1)


def _expect(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response


def capture_search_sql(engine: Engine, body: dict[str, Any] = SEARCH_BODY) -> tuple[str, Any]:
    """The SQL statement and parameters the search of ``body`` sends to the database."""
    from catalog.entities.search import search_entities

    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if "FROM entities" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with make_sessionmaker(engine)() as session:
            page = search_entities(
                session,
                query=body["query"],
                sort=body.get("sort", []),
                limit=body["limit"],
                cursor=None,
                now=utcnow(),
            )
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    if len(page.items) != body["limit"] or len(captured) != 1:
        raise RuntimeError(f"unexpected search: {len(page.items)} items, {len(captured)} statements")
    return captured[0]


def sql_latencies(engine: Engine, shape: SearchShape, rounds: int) -> tuple[list[float], list[float]]:
    """Milliseconds of the SQL the search of ``shape`` compiles to and of its hand-written twin,
    run directly on ``engine``, interleaved per round so both see the same machine load. Both
    must answer the same rows in the same order."""
    statement, parameters = capture_search_sql(engine, shape.body)
    hand = shape.hand_sql[engine.dialect.name]
    with engine.connect() as conn:
        ours_ids = [row.identifier for row in conn.exec_driver_sql(statement, parameters)]
        hand_ids = [row.identifier for row in conn.exec_driver_sql(hand)]
        if ours_ids != hand_ids:
            raise RuntimeError(f"{shape.name}: the hand-written SQL answers other rows than the search")
        compiled: list[float] = []
        written: list[float] = []
        for i in range(20 + rounds):
            for call, samples in (
                (lambda: conn.exec_driver_sql(statement, parameters).all(), compiled),
                (lambda: conn.exec_driver_sql(hand).all(), written),
            ):
                started = time.perf_counter()
                call()
                if i >= 20:
                    samples.append((time.perf_counter() - started) * 1000)
    return compiled, written


def _search_call(http: httpx.Client, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: _expect(http.post("/v1/entities/search", json=body))


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- permissions: a member of one of 50 teams against an admin --------------------------------

PERMISSION_TEAMS = 50


def team_of(index: int) -> str:
    # Independent of the language (index % 4) and tier (index % 3) the search selects on.
    return f"bench-team-{(index // 4) % PERMISSION_TEAMS:02d}"


def prepare_permission_catalog(url: str) -> None:
    """Migrate ``url``; 50 teams and the bench blueprint, readable by the owning teams only."""
    upgrade(url)
    engine = make_engine(url)
    body = {**BLUEPRINT_BODY, "permissions": {"read": {"owned_by_team": True}}}
    try:
        with transaction(make_sessionmaker(engine)) as session:
            for k in range(PERMISSION_TEAMS):
                create_team(session, TeamIn(identifier=f"bench-team-{k:02d}", title=f"Team {k}"), ADMIN)
            create_blueprint(session, BlueprintIn.model_validate(body), ADMIN)
    finally:
        engine.dispose()


def bulk_as(engine: Engine, entities: list[dict[str, Any]], who: Principal) -> float:
    """Entities per second written by ``write_entities`` on behalf of ``who`` (as the bulk route)."""
    factory = make_sessionmaker(engine)
    started = time.perf_counter()
    for start in range(0, len(entities), BATCH):
        with transaction(factory) as session:
            results = write_entities(
                session,
                BLUEPRINT,
                entities[start : start + BATCH],
                mode=Mode.UPSERT,
                actor=Actor(who.identifier),
                bulk=True,
                who=who,
            )
        failed = [r for r in results if r.error is not None]
        if failed:
            raise RuntimeError(f"bench entity refused: {failed[0].identifier}: {failed[0].error}")
    return len(entities) / (time.perf_counter() - started)


def search_latencies(
    engine: Engine, who: Principal, rounds: int, body: dict[str, Any] = SEARCH_BODY
) -> list[float]:
    """``body`` through the search service (the SQL the route runs) on behalf of ``who``."""
    from catalog.entities.search import search_entities

    factory = make_sessionmaker(engine)

    def once() -> None:
        with factory() as session:
            search_entities(
                session,
                query=body["query"],
                sort=body.get("sort", []),
                limit=body["limit"],
                cursor=None,
                now=utcnow(),
                who=who,
            )

    return latencies(once, warmup=20, rounds=rounds)


def run_permissions(kind: str, count: int, rounds: int, workdir: Path) -> list[Row]:
    """A member of team 00 writes team 00's entities; an admin writes team 01's, as many, into
    the same catalog (everything else written first). Then both search the whole catalog."""
    entities = make_entities(count)
    for index, entity in enumerate(entities):
        entity["team"] = [team_of(index)]
        entity["properties"]["owner_team"] = team_of(index)
    member = Principal("bench-member", MEMBER, teams=frozenset({team_of(0)}))
    admin = Principal("admin", ADMIN_ROLE)
    mine = [e for e in entities if e["team"] == [team_of(0)]]
    theirs = [e for e in entities if e["team"] == [team_of(4)]]
    rest = [e for e in entities if e["team"] not in ([team_of(0)], [team_of(4)])]
    with fresh_database(kind, workdir) as url:
        prepare_permission_catalog(url)
        engine = make_engine(url)
        try:
            bulk_as(engine, rest, admin)
            if engine.dialect.name == "postgresql":
                analyze(engine)
            admin_rate = bulk_as(engine, theirs, admin)
            member_rate = bulk_as(engine, mine, member)
            if engine.dialect.name == "postgresql":
                analyze(engine)
            admin_search = search_latencies(engine, admin, rounds)
            member_search = search_latencies(engine, member, rounds)
            by_title = SEARCH_SHAPES[1].body
            admin_sorted = search_latencies(engine, admin, rounds, by_title)
            member_sorted = search_latencies(engine, member, rounds, by_title)
        finally:
            engine.dispose()
    print(
        f"[{kind}] permissions: bulk member {member_rate:,.0f}/s, admin {admin_rate:,.0f}/s", file=sys.stderr
    )
    within = "within 1.2x of admin"
    return [
        Row("bulk upsert, member (50 teams)", kind, member_rate, admin_rate, "entities/s", within,
            lambda _ours, ratio: ratio >= 1 / 1.2),
        Row("search p50, member (50 teams)", kind, percentile(member_search, 50), percentile(admin_search, 50),
            "ms", within, lambda _ours, ratio: ratio <= 1.2),
        Row("search p95, member (50 teams)", kind, percentile(member_search, 95), percentile(admin_search, 95),
            "ms", "—"),
        Row("search by title, in, p95, member", kind, percentile(member_sorted, 95),
            percentile(admin_sorted, 95), "ms", "—"),
    ]  # fmt: skip


# ---- one database ----------------------------------------------------------------------------


def run_database(kind: str, count: int, rounds: int, workdir: Path) -> list[Row]:
    entities = make_entities(count)
    rows: list[Row] = []

    with fresh_database(kind, workdir) as raw_url:
        prepare_catalog(raw_url)
        engine = make_engine(raw_url)
        try:
            raw_rate = bulk_raw(engine, entities)
        finally:
            engine.dispose()

    with fresh_database(kind, workdir) as url:
        prepare_catalog(url)
        engine = make_engine(url)
        try:
            ours_rate = bulk_through_service(engine, entities)
            print(f"[{kind}] bulk: service {ours_rate:,.0f}/s, raw {raw_rate:,.0f}/s", file=sys.stderr)
            rows.append(
                Row("bulk upsert", kind, ours_rate, raw_rate, "entities/s", "ratio ≥ 0.5",
                    lambda _ours, ratio: ratio >= 0.5)
            )  # fmt: skip
            if engine.dialect.name == "postgresql":
                analyze(engine)

            sql = {shape.name: sql_latencies(engine, shape, rounds) for shape in SEARCH_SHAPES}
        finally:
            engine.dispose()

        token = secrets.token_urlsafe(24)
        env = {"GANTRY_DATABASE_URL": url, "GANTRY_ADMIN_TOKEN": token, "GANTRY_DATA_DIR": str(workdir)}
        auth = {"Authorization": f"Bearer {token}"}
        pids: list[int] = []
        with (
            uvicorn_server("api.app:create_app", env, pids) as base,
            httpx.Client(base_url=base, headers=auth) as http,
        ):
            drain_outbox(http)
            http_search = {
                shape.name: latencies(_search_call(http, shape.body), warmup=20, rounds=rounds)
                for shape in SEARCH_SHAPES
            }
            api_rss = rss_mib(pids[0])
            one = f"/v1/blueprints/{BLUEPRINT}/entities/{entities[count // 2]['identifier']}"
            get_ours = latencies(lambda: _expect(http.get(one)), warmup=20, rounds=rounds)
        with uvicorn_server("bench.catalog:bare_app", env) as base, httpx.Client(base_url=base) as http:
            get_bare = latencies(lambda: _expect(http.get("/constant")), warmup=20, rounds=rounds)

    bare95 = percentile(get_bare, 95)
    for shape in SEARCH_SHAPES:
        compiled, written = sql[shape.name]
        ours95 = percentile(http_search[shape.name], 95)
        rows += [
            Row(f"search {shape.name}, p95 HTTP", kind, ours95, bare95 + percentile(compiled, 95), "ms",
                "≤ 10 ms, ≤ 2x bare GET + its SQL", lambda ours, ratio: ours <= 10 and ratio <= 2),
            Row(f"search {shape.name}, p95 SQL", kind, percentile(compiled, 95), percentile(written, 95),
                "ms", "≤ 2x hand-written SQL", lambda _ours, ratio: ratio <= 2),
        ]  # fmt: skip
    rows += [
        Row("GET entity p50", kind, percentile(get_ours, 50), percentile(get_bare, 50), "ms", "—"),
        Row("GET entity p95", kind, percentile(get_ours, 95), bare95, "ms", "—"),
        Row("API RSS after the searches", kind, api_rss, 300, "MiB", "≤ 300 MiB",
            lambda ours, _ratio: ours <= 300),
    ]  # fmt: skip
    return rows


# ---- report ----------------------------------------------------------------------------------


def _number(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "entities/s" else f"{value:.2f} {unit}"


def render(rows: list[Row], count: int) -> str:
    header = ["measurement", "db", "ours", "baseline", "ratio", "target"]
    body = []
    for row in rows:
        verdict = "" if row.met is None else (" ✓" if row.met(row.ours, row.ratio) else " ✗ MISSED")
        body.append(
            [
                row.measurement,
                row.db,
                _number(row.ours, row.unit),
                _number(row.baseline, row.unit),
                f"{row.ratio:.2f}x",
                row.target + verdict,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    title = (
        f"Catalog benchmark, {count:,} entities of a 10-property blueprint ({utcnow():%Y-%m-%d %H:%M} UTC)"
    )
    baselines = (
        "Baselines: raw DBAPI executemany INSERT (bulk), the search's own SQL run directly on the same "
        "engine (search), a bare FastAPI endpoint on the same uvicorn settings (GET); for the member "
        "rows, the same work done by an admin (read permission: owned_by_team, 50 teams)."
    )
    return "\n".join([title, "", line(header), rule, *(line(r) for r in body), "", baselines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog", description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000, help="entities to write (default 100000)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=500, help="measured requests per latency figure")
    parser.add_argument(
        "--only-permissions", action="store_true", help="only the member-against-admin figures"
    )
    args = parser.parse_args(argv)
    if args.entities < 1000:
        parser.error("--entities must be at least 1000 (the search needs 50 matches)")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as workdir:
        for kind in kinds:
            if not args.only_permissions:
                rows += run_database(kind, args.entities, args.rounds, Path(workdir))
            rows += run_permissions(kind, args.entities, args.rounds, Path(workdir))
    table = render(rows, args.entities)
    print(table)
    if not args.only_permissions:  # a partial run leaves the full table in place
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(table)
    return 0 if all(r.met is None or r.met(r.ours, r.ratio) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

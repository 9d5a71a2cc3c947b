"""Two writers upserting the same new entity at once (two API processes behind a load balancer).

Both read "no such entity"; the second one's insert waits for the first's transaction and then
breaks the blueprint/identifier key. Both must succeed: the second finds the first's entity and
updates it (last write wins), and the audit log and the events say so (a CREATE, then an
UPDATE whose "before" is what the first wrote). A create that loses the same race is a 409.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.blueprints.service import create_blueprint
from catalog.entities.service import Mode, WriteResult, write_entities, write_one
from catalog.errors import Conflict
from catalog.models import AuditRecord, Entity, Event
from catalog.schemas import BlueprintIn

FIRST, SECOND = Actor("first@example.com"), Actor("second@example.com")


@pytest.fixture
def catalog(engine: Engine) -> Engine:
    with Session(engine) as session:
        service = {
            "identifier": "service",
            "title": "Service",
            "schema": {"properties": {"v": {"type": "string"}}},
        }
        create_blueprint(session, BlueprintIn.model_validate(service), FIRST)
        session.commit()
    return engine


def _blocked_on_a_lock(engine: Engine) -> bool:
    """Whether some other session waits for a row or key lock (PostgreSQL); SQLite cannot say."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)  # the second writer waits for SQLite's write lock (busy timeout 30 s)
        return True
    with engine.connect() as conn:
        waiting = conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
    return bool(waiting)


def race(engine: Engine, second: Callable[[Session], Any]) -> Any:
    """The first writer inserts ``svc`` and holds its transaction open; ``second`` runs in another
    thread and session, reads before the first commits, and blocks on the key; then the first
    commits. Returns what ``second`` returned (or raised)."""
    outcome: dict[str, Any] = {}

    def run_second() -> None:
        with Session(engine) as session:
            try:
                outcome["value"] = second(session)
                session.commit()
            except Exception as exc:
                outcome["error"] = exc

    with Session(engine) as first:
        result = write_one(
            first, "service", {"identifier": "svc", "properties": {"v": "1"}}, mode=Mode.UPSERT, actor=FIRST
        )
        assert result.status == "created"
        thread = threading.Thread(target=run_second)
        thread.start()
        deadline = time.monotonic() + 10
        while not _blocked_on_a_lock(engine):
            assert time.monotonic() < deadline, "the second writer never reached the key"
            time.sleep(0.02)
        first.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def journal(catalog: Engine) -> Iterator[Callable[[], dict[str, Any]]]:
    def read() -> dict[str, Any]:
        with Session(catalog) as session:
            audits = session.scalars(
                select(AuditRecord)
                .where(AuditRecord.resource_type == "entity", AuditRecord.identifier == "svc")
                .order_by(AuditRecord.id)
            )
            events = session.scalars(select(Event).where(Event.entity == "svc").order_by(Event.id))
            return {
                "entities": list(
                    session.scalars(select(Entity.properties).where(Entity.identifier == "svc"))
                ),
                "audit": [(a.operation, a.actor, (a.before or {}).get("properties")) for a in audits],
                "events": [e.type for e in events],
            }

    yield read


def test_two_upserts_of_one_new_entity_both_succeed_and_the_last_wins(
    catalog: Engine, journal: Callable[[], dict[str, Any]]
) -> None:
    result: WriteResult = race(
        catalog,
        lambda session: write_one(
            session,
            "service",
            {"identifier": "svc", "properties": {"v": "2"}},
            mode=Mode.UPSERT,
            actor=SECOND,
        ),
    )
    assert result.status == "updated"
    assert journal() == {
        "entities": [{"v": "2"}],
        "audit": [("CREATE", FIRST.user, None), ("UPDATE", SECOND.user, {"v": "1"})],
        "events": ["ENTITY_CREATED", "ENTITY_UPDATED"],
    }


def test_a_bulk_merge_losing_the_race_merges_into_the_winner(
    catalog: Engine, journal: Callable[[], dict[str, Any]]
) -> None:
    results = race(
        catalog,
        lambda session: write_entities(
            session,
            "service",
            [{"identifier": "svc", "title": "Svc"}, {"identifier": "other", "properties": {"v": "9"}}],
            mode=Mode.MERGE,
            actor=SECOND,
            bulk=True,
        ),
    )
    assert [(r.identifier, r.status) for r in results] == [("svc", "updated"), ("other", "created")]
    assert journal()["entities"] == [{"v": "1"}]  # merged: the first writer's property kept


def test_a_create_losing_the_race_is_a_conflict(
    catalog: Engine, journal: Callable[[], dict[str, Any]]
) -> None:
    with pytest.raises(Conflict, match="already exists"):
        race(
            catalog,
            lambda session: write_one(
                session,
                "service",
                {"identifier": "svc", "properties": {"v": "2"}},
                mode=Mode.CREATE,
                actor=SECOND,
            ),
        )
    assert journal()["audit"] == [("CREATE", FIRST.user, None)]

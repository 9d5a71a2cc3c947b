"""The entity write pipeline (``catalog.changes.pipeline.apply_changes``) on SQLite and PostgreSQL: what
each write hands it, what a delete does to the entities that pointed at the deleted one, and
the bound on computed properties changing computed properties."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import catalog.entities.service
from catalog.audit import Actor
from catalog.blueprints.service import create_blueprint, get_blueprint
from catalog.changes import pipeline as changes
from catalog.changes.state import ChangeKind, EntityChange, load_rows, state
from catalog.db import utcnow
from catalog.entities.service import Mode, delete_entity, write_entities, write_one
from catalog.models import Entity, Event, ScorecardResult
from catalog.schemas import BlueprintIn
from catalog.scorecards.service import ScorecardIn, save

ACTOR = Actor("admin@example.com")


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A catalog of systems and the services that belong to them (``system``, optional) and
    fail over to them (``backup``, optional); a service mirrors its system's tier and is Silver
    on the 'wired' scorecard while it has a backup."""
    with Session(engine) as session:
        system = {"properties": {"tier": {"type": "string"}}}
        create_blueprint(
            session,
            BlueprintIn.model_validate({"identifier": "system", "title": "System", "schema": system}),
            ACTOR,
        )
        service = {
            "identifier": "service",
            "title": "Service",
            "relations": {"system": {"target": "system"}, "backup": {"target": "system"}},
            "mirror_properties": {"system_tier": {"path": "system.tier"}},
        }
        create_blueprint(session, BlueprintIn.model_validate(service), ACTOR)
        wired = {
            "identifier": "wired",
            "title": "Wired",
            "levels": [{"title": "Bronze"}, {"title": "Silver"}],
            "rules": [
                {
                    "identifier": "has_backup",
                    "level": "Silver",
                    "query": {
                        "combinator": "and",
                        "rules": [{"relation": "backup", "operator": "isNotEmpty"}],
                    },
                }
            ],
        }
        save(session, get_blueprint(session, "service"), ScorecardIn.model_validate(wired), ACTOR)
        session.commit()
        yield session


def spy(monkeypatch: pytest.MonkeyPatch) -> list[list[EntityChange]]:
    """Record what the entity service hands the pipeline (which still runs)."""
    calls: list[list[EntityChange]] = []
    real = changes.apply_changes

    def recording(session: Session, batch: Sequence[EntityChange], *, depth: int = 0) -> None:
        calls.append(list(batch))
        real(session, batch, depth=depth)

    monkeypatch.setattr(catalog.entities.service, "apply_changes", recording)
    return calls


def kinds(batch: list[EntityChange]) -> list[tuple[str, str, ChangeKind]]:
    return [(c.blueprint, c.identifier, c.kind) for c in batch]


def level(session: Session, identifier: str) -> str | None:
    return session.scalar(
        select(ScorecardResult.level)
        .join(Entity, Entity.id == ScorecardResult.entity_id)
        .where(Entity.blueprint == "service", Entity.identifier == identifier)
    )


def entity_events(session: Session, since: int) -> list[tuple[str, str | None]]:
    rows = session.execute(select(Event.type, Event.entity).where(Event.id > since).order_by(Event.id))
    return [(type_, entity) for type_, entity in rows]


def last_event_id(session: Session) -> int:
    return max(session.scalars(select(Event.id)), default=0)


def test_a_change_knows_its_kind_and_needs_a_state() -> None:
    now = utcnow()
    a: dict[str, Any] = {"identifier": "a", "title": None, "team": [], "properties": {}, "relations": {}}
    assert EntityChange("service", "a", None, a, ACTOR, now).kind is ChangeKind.CREATED
    assert EntityChange("service", "a", a, a, ACTOR, now).kind is ChangeKind.UPDATED
    assert EntityChange("service", "a", a, None, ACTOR, now).kind is ChangeKind.DELETED
    assert EntityChange("service", "a", a, None, Actor("x", run_id="r1"), now).run_id == "r1"
    with pytest.raises(ValueError, match="needs a state"):
        EntityChange("service", "a", None, None, ACTOR, now)


def test_every_write_hands_the_pipeline_one_change_per_written_entity(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spy(monkeypatch)
    write_one(
        session, "system", {"identifier": "s1", "properties": {"tier": "gold"}}, mode=Mode.CREATE, actor=ACTOR
    )
    raw = [{"identifier": "a", "relations": {"system": "s1", "backup": "s1"}}, {"identifier": "b"}]
    write_entities(session, "service", raw, mode=Mode.UPSERT, actor=ACTOR, bulk=True)
    write_entities(
        session, "service", [*raw, {"identifier": "c", "title": "C"}], mode=Mode.UPSERT, actor=ACTOR
    )
    write_one(session, "service", {"identifier": "b", "title": "B"}, mode=Mode.UPSERT, actor=ACTOR)

    assert [kinds(batch) for batch in calls] == [
        [("system", "s1", ChangeKind.CREATED)],
        [("service", "a", ChangeKind.CREATED), ("service", "b", ChangeKind.CREATED)],
        [("service", "c", ChangeKind.CREATED)],  # a and b are unchanged: nothing to apply
        [("service", "b", ChangeKind.UPDATED)],
    ]
    updated = calls[3][0]
    assert updated.before is not None and updated.after is not None
    assert (updated.before["title"], updated.after["title"]) == (None, "B")
    assert updated.entity_id == load_rows(session, "service", ["b"])["b"]["id"]
    # the pipeline ran: the mirror and the grade of the written entities are current
    assert load_rows(session, "service", ["a"])["a"]["properties"] == {"system_tier": "gold"}
    assert (level(session, "a"), level(session, "b")) == ("Silver", "Bronze")


def test_deleting_an_entity_updates_events_and_regrades_the_entities_that_pointed_at_it(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_one(session, "system", {"identifier": "s1"}, mode=Mode.CREATE, actor=ACTOR)
    write_one(
        session, "service", {"identifier": "a", "relations": {"backup": "s1"}}, mode=Mode.CREATE, actor=ACTOR
    )
    session.commit()
    assert level(session, "a") == "Silver"
    since = last_event_id(session)
    calls = spy(monkeypatch)

    delete_entity(session, "system", "s1", ACTOR)
    session.commit()

    assert [kinds(batch) for batch in calls] == [
        [("service", "a", ChangeKind.UPDATED), ("system", "s1", ChangeKind.DELETED)]
    ]
    update = calls[0][0]
    assert update.before is not None and update.after is not None
    assert (update.before["relations"], update.after["relations"]) == ({"backup": "s1"}, {"backup": None})
    assert load_rows(session, "service", ["a"])["a"]["relations"] == {"backup": None}
    assert level(session, "a") == "Bronze"  # regraded: it no longer has a backup
    assert entity_events(session, since) == [
        ("ENTITY_UPDATED", "a"),
        ("ENTITY_DELETED", "s1"),
        ("SCORECARD_LEVEL_CHANGED", "a"),
    ]


def test_a_deleted_target_clears_the_mirrors_that_read_it(session: Session) -> None:
    write_one(
        session, "system", {"identifier": "s1", "properties": {"tier": "gold"}}, mode=Mode.CREATE, actor=ACTOR
    )
    write_one(
        session, "service", {"identifier": "a", "relations": {"system": "s1"}}, mode=Mode.CREATE, actor=ACTOR
    )
    assert _tier_of_a(session) == "gold"
    since = last_event_id(session)

    delete_entity(session, "system", "s1", ACTOR)

    row = load_rows(session, "service", ["a"])["a"]
    assert (row["relations"], row["properties"]) == ({"system": None}, {})
    assert entity_events(session, since) == [
        ("ENTITY_UPDATED", "a"),  # the relation cleared
        ("ENTITY_DELETED", "s1"),
        ("ENTITY_UPDATED", "a"),  # its mirror cleared: a computed change, through the pipeline
    ]


def _retier(session: Session, tier: str) -> EntityChange:
    """Write system s1's tier directly (as a writer does before it applies the change)."""
    system = session.scalars(select(Entity).where(Entity.identifier == "s1")).one()
    before = state(
        {c: getattr(system, c) for c in ("identifier", "title", "team", "properties", "relations")}
    )
    system.properties = {**system.properties, "tier": tier}
    session.flush()
    after = {**before, "properties": dict(system.properties)}
    return EntityChange("system", "s1", before, after, ACTOR, utcnow(), system.id)


def _tier_of_a(session: Session) -> Any:
    return load_rows(session, "service", ["a"])["a"]["properties"].get("system_tier")


def test_the_cascade_depth_is_passed_explicitly_and_bounded(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    write_one(
        session, "system", {"identifier": "s1", "properties": {"tier": "gold"}}, mode=Mode.CREATE, actor=ACTOR
    )
    write_one(
        session, "service", {"identifier": "a", "relations": {"system": "s1"}}, mode=Mode.CREATE, actor=ACTOR
    )
    since = last_event_id(session)

    changes.apply_changes(session, [_retier(session, "silver")], depth=changes.MAX_CASCADE - 1)
    assert _tier_of_a(session) == "silver"  # one hop left: the mirror follows

    with caplog.at_level(logging.WARNING, logger="gantry.changes"):
        changes.apply_changes(session, [_retier(session, "bronze")], depth=changes.MAX_CASCADE)
    assert _tier_of_a(session) == "silver"  # no hop left: the change is evented, nothing follows
    assert "cascade stopped after 10 hops at 'system'" in caplog.text
    assert entity_events(session, since) == [
        ("ENTITY_UPDATED", "s1"),
        ("ENTITY_UPDATED", "a"),
        ("ENTITY_UPDATED", "s1"),
    ]
    assert session.info.get("gantry.computed.depth") is None  # the depth never rides on the session

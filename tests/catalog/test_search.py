"""Entity search and listing on SQLite and PostgreSQL: sort orders, keyset cursors, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from catalog.entities.search import list_entities, search_entities
from catalog.errors import Invalid
from catalog.models import Entity
from catalog.pagination import encode_cursor
from tests.catalog import T0, add_blueprints, add_entity

NOW = datetime(2025, 1, 1, tzinfo=UTC)
# Values of every JSON type, with ties, a null and missing ones; "size" is spread over types.
SIZES: list[Any] = [3, 1.5, 3, -2, "b", "B", "a", "", True, False, None, [1], {"k": 1}, 10**12, 3, "b"]
TITLES = ["Zeta", "alpha", None, "Beta", "alpha", None, "é", "beta"]


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        add_blueprints(session, "service", "system")
        for i in range(24):
            props = {"size": SIZES[i]} if i < len(SIZES) else {}
            props["even"] = i % 2 == 0
            add_entity(
                session,
                "service" if i % 3 else "system",
                f"e{i:02d}",
                title=TITLES[i % len(TITLES)],
                properties=props,
                created_at=T0 + timedelta(days=i % 5),
            )
        session.commit()
        yield session


def all_pages(session: Session, *, limit: int, **kwargs: Any) -> list[str]:
    """Every page of a search, following cursors; fails on a repeated entity."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = search_entities(session, limit=limit, cursor=cursor, now=NOW, **kwargs)
        assert len(page.items) <= limit
        seen += [e.identifier for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(page.items) == limit
    assert len(seen) == len(set(seen)), f"duplicates in {seen}"
    return seen


def _type_rank(value: Any) -> int:
    if isinstance(value, bool):
        return 2
    if isinstance(value, int | float):
        return 0
    if isinstance(value, str):
        return 1
    return 3 if isinstance(value, list | dict) else 4


def _typed(value: Any) -> tuple[Any, str]:
    """The (number, text) pair a property value sorts by within its type."""
    if _type_rank(value) == 0:
        return (value, "")
    if _type_rank(value) in (1, 2):
        return (0, str(value).lower() if isinstance(value, bool) else value)
    return (0, "")


def reference_order(entities: list[Entity], sort: list[dict[str, Any]]) -> list[str]:
    """The documented order, computed in Python with stable sorts from the last key to the first."""
    ordered = sorted(entities, key=lambda e: e.id)
    for item in reversed(sort):
        name, descending = item["property"].lstrip("$"), item.get("order") == "desc"
        if name in ("title", "identifier", "blueprint", "created_at", "updated_at"):
            present = [e for e in ordered if getattr(e, name) is not None]
            present.sort(key=lambda e: getattr(e, name), reverse=descending)
            ordered = present + [e for e in ordered if getattr(e, name) is None]
        else:
            values = {e.id: e.properties.get(name) for e in ordered}
            ordered.sort(key=lambda e: _typed(values[e.id]), reverse=descending)
            ordered.sort(key=lambda e: _type_rank(values[e.id]))
    return [e.identifier for e in ordered]


SORTS = [
    [],
    [{"property": "$identifier", "order": "desc"}],
    [{"property": "size", "order": "asc"}],
    [{"property": "size", "order": "desc"}],
    [{"property": "title", "order": "asc"}],  # the README's spelling of $title
    [{"property": "$title", "order": "desc"}, {"property": "size", "order": "asc"}],
    [{"property": "$created_at", "order": "desc"}, {"property": "$title"}],
    [{"property": "$blueprint"}, {"property": "even", "order": "desc"}, {"property": "$created_at"}],
    [{"property": "missing_everywhere", "order": "desc"}],
]


@pytest.mark.parametrize("sort", SORTS, ids=[str(i) for i in range(len(SORTS))])
def test_pages_follow_the_sort_without_gaps_or_duplicates(
    session: Session, sort: list[dict[str, Any]]
) -> None:
    entities = list(session.query(Entity))
    expected = reference_order(entities, sort)
    assert all_pages(session, query=None, sort=sort, limit=1000) == expected
    for limit in (1, 4, 7):
        assert all_pages(session, query=None, sort=sort, limit=limit) == expected


def test_pages_of_a_filtered_search(session: Session) -> None:
    query = {"combinator": "and", "rules": [{"property": "$blueprint", "operator": "=", "value": "service"}]}
    sort = [{"property": "size", "order": "desc"}]
    services = [e for e in session.query(Entity) if e.blueprint == "service"]
    assert all_pages(session, query=query, sort=sort, limit=3) == reference_order(services, sort)


def test_an_exact_last_page_has_no_cursor(session: Session) -> None:
    page = search_entities(session, query=None, sort=None, limit=24, cursor=None, now=NOW)
    assert len(page.items) == 24
    assert page.next_cursor is None


def invalid(call: Any) -> list[str]:
    with pytest.raises(Invalid) as caught:
        call()
    return [d.pointer for d in caught.value.details]


def search(session: Session, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {"query": None, "sort": None, "limit": 10, "cursor": None, "now": NOW}
    return lambda: search_entities(session, **(kwargs | overrides))


def test_bad_search_input_names_each_field(session: Session) -> None:
    assert invalid(search(session, sort=[{"property": "a b"}])) == ["/sort/0/property"]
    assert invalid(search(session, sort=[{"property": "x"}, {"property": "$owner"}])) == ["/sort/1/property"]
    assert invalid(search(session, sort=[{"property": "x", "order": "up"}])) == ["/sort/0/order"]
    assert invalid(search(session, sort=[{"property": "x", "oder": "asc"}])) == ["/sort/0/oder"]
    assert invalid(search(session, sort=["x"])) == ["/sort/0"]
    assert invalid(search(session, sort=[{"property": "x"}] * 6)) == ["/sort"]
    assert invalid(search(session, limit=0)) == ["/limit"]
    assert invalid(search(session, limit=1001)) == ["/limit"]
    assert invalid(search(session, cursor="%%%")) == ["/cursor"]
    assert invalid(search(session, cursor=encode_cursor(["x", 1]))) == ["/cursor"]
    bad_query = {"combinator": "and", "rules": [{"property": "x", "operator": "~"}]}
    assert invalid(search(session, query=bad_query, limit=0)) == ["/query/rules/0/operator", "/limit"]


def test_a_cursor_only_resumes_the_sort_it_came_from(session: Session) -> None:
    by_size = [{"property": "size"}]
    page = search_entities(session, query=None, sort=by_size, limit=2, cursor=None, now=NOW)
    assert page.next_cursor is not None
    assert invalid(
        search(session, sort=[{"property": "size", "order": "desc"}], cursor=page.next_cursor)
    ) == ["/cursor"]
    same = [{"property": "size", "order": "asc"}]  # the same sort, spelled out
    assert search(session, sort=same, cursor=page.next_cursor)().items


def test_a_forged_cursor_is_refused(session: Session) -> None:
    page = search_entities(session, query=None, sort=[{"property": "size"}], limit=2, cursor=None, now=NOW)
    assert page.next_cursor is not None
    from catalog.pagination import decode_cursor

    fingerprint, *keys = decode_cursor(page.next_cursor)
    for forged in ([fingerprint, "x", *keys[1:]], [fingerprint, *keys[:-1], "1"], [fingerprint, *keys, 1]):
        assert invalid(search(session, sort=[{"property": "size"}], cursor=encode_cursor(forged))) == [
            "/cursor"
        ]
    timed = search_entities(
        session, query=None, sort=[{"property": "$created_at"}], limit=2, cursor=None, now=NOW
    )
    fingerprint, *keys = decode_cursor(timed.next_cursor or "")
    naive = [fingerprint, "2024-01-01T00:00:00", keys[-1]]
    assert invalid(search(session, sort=[{"property": "$created_at"}], cursor=encode_cursor(naive))) == [
        "/cursor"
    ]


def test_list_entities_pages_one_blueprint_by_id(session: Session) -> None:
    expected = [e.identifier for e in session.query(Entity).order_by(Entity.id) if e.blueprint == "service"]
    seen: list[str] = []
    cursor = None
    while True:
        page = list_entities(session, blueprint="service", limit=5, cursor=cursor)
        seen += [e.identifier for e in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == expected
    assert list_entities(session, blueprint="nothing", limit=5, cursor=None).items == []
    assert invalid(lambda: list_entities(session, blueprint="service", limit=5, cursor="abc")) == ["/cursor"]
    assert invalid(lambda: list_entities(session, blueprint="service", limit=0, cursor=None)) == ["/limit"]
    assert invalid(
        lambda: list_entities(session, blueprint="service", limit=5, cursor=encode_cursor(["1"]))
    ) == ["/cursor"]

"""Agent tokens: an AI agent is a principal with its own token, acting for the user who owns it.

The agent has its owner's permissions narrowed by the token: the actions it may launch
(``allowed_actions``), a budget of launches per hour, and ``read_only``. It is audited as
``agent:{name}`` on behalf of its owner and can never approve anything: approving is a human's
judgement, and an agent approving its own (or another agent's) run would void the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.audit import Actor
from catalog.errors import Conflict, FieldError, Forbidden, Invalid
from catalog.models import AgentToken, ApiToken
from catalog.schemas import TokenIn

AGENT_PREFIX = "agent:"
AGENT_FIELDS = ("name", "allowed_actions", "runs_per_hour", "read_only")


@dataclass(frozen=True)
class AgentGrant:
    """What an agent token allows, as the API's guards and the launch gate see it."""

    token_id: str
    name: str
    owner: str
    allowed_actions: frozenset[str]
    runs_per_hour: int | None
    read_only: bool

    @property
    def actor_name(self) -> str:
        return AGENT_PREFIX + self.name

    def actor(self, run_id: str | None = None) -> Actor:
        return Actor(self.actor_name, run_id, on_behalf_of=self.owner)

    def may_launch(self, action: str) -> bool:
        return action in self.allowed_actions


def check_agent_fields(body: TokenIn) -> None:
    """A user token names no agent fields; an agent token needs a name (422 by pointer)."""
    if body.kind == "agent":
        if body.name is None:
            raise Invalid("an agent token needs a name", [FieldError("/name", "required for kind agent")])
        return
    given = [f for f in AGENT_FIELDS if f in body.model_fields_set]
    if given:
        details = [FieldError(f"/{f}", "only for kind agent") for f in given]
        raise Invalid("these fields are for agent tokens", details)


def refuse_agent_caller(caller_agent: AgentGrant | None) -> None:
    """An agent mints no tokens: a token it made would carry none of its narrowing."""
    if caller_agent is not None:
        raise Forbidden("an agent token cannot create or delete tokens")


def create_agent(session: Session, token: ApiToken, body: TokenIn) -> AgentToken:
    assert body.name is not None  # check_agent_fields ran
    if session.scalar(select(AgentToken.token_id).where(AgentToken.name == body.name)) is not None:
        raise Conflict(f"agent '{body.name}' already exists", [FieldError("/name", "already in use")])
    agent = AgentToken(
        token_id=token.id,
        name=body.name,
        allowed_actions=sorted(set(body.allowed_actions or [])),
        runs_per_hour=body.runs_per_hour,
        read_only=body.read_only,
    )
    session.add(agent)
    return agent


def agent_fields(agent: AgentToken | None) -> dict[str, Any]:
    if agent is None:
        return {"kind": "user"}
    return {
        "kind": "agent",
        "name": agent.name,
        "allowed_actions": list(agent.allowed_actions),
        "runs_per_hour": agent.runs_per_hour,
        "read_only": agent.read_only,
    }


def grant_of(session: Session, token_id: str) -> AgentGrant | None:
    """The narrowing of the token ``token_id``, or None when it is a user's token."""
    row = session.execute(
        select(AgentToken, ApiToken.user)
        .join(ApiToken, ApiToken.id == AgentToken.token_id)
        .where(AgentToken.token_id == token_id)
    ).first()
    if row is None:
        return None
    agent: AgentToken = row[0]
    return AgentGrant(
        token_id=agent.token_id,
        name=agent.name,
        owner=row[1],
        allowed_actions=frozenset(agent.allowed_actions or []),
        runs_per_hour=agent.runs_per_hour,
        read_only=agent.read_only,
    )

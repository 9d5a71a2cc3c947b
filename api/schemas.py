"""The response models of the API: what each route answers, as the OpenAPI document states it.

They describe the presenters' dicts (``catalog.*.…_view``/``…_to_dict``) key for key, so
declaring them changes no response. Shapes that are open by nature (an entity's properties, a
run's inputs and outputs, a stored definition's rules) stay ``dict[str, Any]`` inside a typed
envelope; only the event view, which merges its payload's keys, allows extra top-level keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, RootModel

from catalog.pagination import MAX_LIMIT

T = TypeVar("T")

RunStatus = Literal[
    "WAITING_FOR_APPROVAL", "IN_PROGRESS", "SUCCESS", "FAILURE", "DECLINED", "CANCELLED", "TIMED_OUT"
]
RunSource = Literal["API", "CLI", "UI", "AUTOMATION", "ACTION"]


class View(BaseModel):
    """A response body: read from the presenter's dict, serialised with the same keys."""

    model_config = ConfigDict(extra="ignore")


# ---- errors --------------------------------------------------------------------------------


class ErrorDetail(View):
    """One failing place: a JSON pointer into the request (``in`` says body, query, path or
    header) and what is wrong there; some errors add keys of their own."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    pointer: str
    message: str
    in_: str | None = Field(None, alias="in")


class ErrorBody(View):
    code: str = Field(examples=["validation_error"])
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(View):
    """Every 4xx and 5xx of the API: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorBody


class Page(View, Generic[T]):
    """A page of a list, in a stable order: follow ``next_cursor`` (``?cursor=``) until it is null."""

    items: list[T]
    next_cursor: str | None = None


# ---- health ----------------------------------------------------------------------------------


class Health(View):
    status: Literal["ok"]


class Ready(View):
    status: Literal["ready"]


# ---- blueprints and entities -----------------------------------------------------------------


class Stamped(View):
    """Who wrote a record, and when (RFC 3339, UTC, milliseconds)."""

    created_at: str | None = None
    updated_at: str | None = None
    created_by: str | None = None
    updated_by: str | None = None


class _BlueprintFields(View):
    identifier: str
    title: str
    description: str | None = None
    icon: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    relations: dict[str, Any]
    timers: dict[str, Any] | None = None
    mirror_properties: dict[str, Any]
    aggregation_properties: dict[str, Any]
    moderators: dict[str, Any]
    permissions: dict[str, Any]


class BlueprintView(Stamped, _BlueprintFields):
    """Blueprint as the API returns it."""

    # Stamped comes first in the bases so that its fields come last in the JSON.


class EntitySource(View):
    """The data source that wrote an entity, and the index of its resource."""

    data_source: str
    resource: int | None = None


class _EntityFields(View):
    identifier: str
    title: str | None = None
    blueprint: str
    team: list[str]
    properties: dict[str, Any]
    relations: dict[str, Any]
    scorecards: dict[str, Any]
    # null: made by hand (or by a run); set: a data source wrote it and owns what it set
    source: EntitySource | None = None


class EntityView(Stamped, _EntityFields):
    """Entity as the API returns it."""

    # Stamped comes first in the bases so that its fields come last in the JSON.


class BulkItemResult(View):
    identifier: str | None = None
    status: str
    http_status: int
    error: ErrorBody | None = None


class BulkResults(View):
    results: list[BulkItemResult]


# ---- identity --------------------------------------------------------------------------------


class UserView(View):
    identifier: str
    email: str
    name: str | None = None
    role: str
    teams: list[str]


class AgentView(View):
    name: str
    allowed_actions: list[str]
    runs_per_hour: int | None = None
    read_only: bool = False


class MeView(UserView):
    agent: AgentView | None = Field(None, description="when the caller's token is an agent's: its narrowing")


class TeamView(View):
    identifier: str
    title: str | None = None
    description: str | None = None


class TokenView(View):
    id: str
    user: str
    description: str | None = None
    expires_at: str | None = None
    created_at: str
    kind: Literal["user", "agent"] = "user"
    name: str | None = Field(None, description="an agent's name: it is audited as `agent:{name}`")
    allowed_actions: list[str] | None = None
    runs_per_hour: int | None = None
    read_only: bool = False


class NewToken(TokenView):
    token: str = Field(description="the secret: shown in this response only")


# ---- actions, automations, scorecards --------------------------------------------------------


class _ActionFields(View):
    identifier: str
    title: str
    description: str = ""
    icon: str | None = None
    blueprint: str | None = None
    trigger: dict[str, Any]
    user_inputs: dict[str, Any] = Field(default_factory=dict)
    preconditions: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    permissions: dict[str, Any] | None = None
    strategy: dict[str, Any] | None = Field(
        None, description="on_failure: what a failed step does to parallel steps (stop, continue)"
    )
    steps: list[dict[str, Any]]
    version: int | None = Field(None, description="1 when created, one more on each change")


class ActionView(Stamped, _ActionFields):
    """An action as saved (optional fields it was saved without are absent)."""

    # Stamped comes first in the bases so that its fields come last in the JSON.


class ConfigWarning(View):
    pointer: str
    message: str


class SavedAction(ActionView):
    warnings: list[ConfigWarning] = Field(description="steps whose vendor is not configured here")


class _AutomationFields(View):
    identifier: str
    title: str = ""
    description: str = ""
    enabled: bool
    trigger: dict[str, Any]
    invoke: dict[str, Any]


class AutomationView(Stamped, _AutomationFields):
    """Automation as the API returns it."""

    # Stamped comes first in the bases so that its fields come last in the JSON.


class _ScorecardFields(View):
    identifier: str
    blueprint: str
    title: str
    description: str = ""
    filter: dict[str, Any] | None = None
    levels: list[dict[str, Any]]
    rules: list[dict[str, Any]] = Field(default_factory=list)


class ScorecardView(Stamped, _ScorecardFields):
    """Scorecard as the API returns it."""

    # Stamped comes first in the bases so that its fields come last in the JSON.


class RulePassRate(View):
    identifier: str
    level: str
    # entities passing the rule, those it fails but an exemption excuses included
    passed: int
    # of which excused by an exemption
    exempt: int = 0
    pass_rate: float | None


class Exempted(View):
    """The exemption that excuses a failing rule: the rule counts as passed until ``expires_at``."""

    id: str
    reason: str
    expires_at: str


class EntityLevel(View):
    entity: str
    level: str | None = None
    # rule -> passed (an exempted rule counts as passed)
    rules: dict[str, Any]
    # rule -> its exemption, for each failing rule an exemption excuses (shown as EXEMPT)
    exempt: dict[str, Exempted] = Field(default_factory=dict)


class ScorecardResults(View):
    """One page of a scorecard's per-entity levels (follow ``next_cursor``); ``total``, the
    distribution and the pass rates count every entity the caller may read, not only the page."""

    scorecard: str
    blueprint: str
    total: int
    distribution: dict[str, int]
    rules: list[RulePassRate]
    items: list[EntityLevel]
    next_cursor: str | None = None


class LevelChange(View):
    scorecard: str
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    to: str | None = None
    at: str
    # the rules exemptions excused at the change, with their exemptions
    exempt: dict[str, Exempted] = Field(default_factory=dict)


class Regraded(View):
    level_changes: int


# ---- runs ------------------------------------------------------------------------------------


class RunSummary(View):
    """What those who may only see the action learn of a run."""

    id: str
    action: str
    action_title: str | None = None
    blueprint: str | None = None
    entity: str | None = None
    status: RunStatus
    status_label: str | None = None
    source: RunSource
    created_by: str
    created_at: str
    updated_at: str
    ended_at: str | None = None
    workflow_id: str
    visibility: Literal["summary"]


class ChildRunLink(View):
    """A sub-action's run, as its parent lists it."""

    id: str
    action: str
    step: str | None = Field(None, description="the parent's step that launched it")
    status: RunStatus


class ChildRunPrepared(View):
    """A sub-action's run, recorded and not yet started: its parent's workflow starts it."""

    run_id: str
    action: str
    workflow_id: str
    workflow_input: dict[str, Any]
    status: RunStatus
    summary: str = ""
    url: str = ""


class RunView(View):
    """The full record of a run."""

    trigger: dict[str, Any] | None = None
    id: str
    action: str
    action_title: str | None = None
    action_version: int | None = Field(None, description="the action's version the run started with")
    blueprint: str | None = None
    entity: str | None = None
    inputs: dict[str, Any]
    status: RunStatus
    status_label: str | None = None
    source: RunSource
    created_by: str
    created_at: str
    updated_at: str
    ended_at: str | None = None
    steps: list[dict[str, Any]]
    approval: dict[str, Any] | None = None
    links: list[dict[str, Any]] | None = None
    affected_entities: list[dict[str, Any]] | None = None
    error: str | None = None
    workflow_id: str
    temporal_ui_url: str | None = None
    parent_run_id: str | None = Field(None, description="the run whose sub-action step launched this one")
    child_runs: list[ChildRunLink] = Field(
        default_factory=list, description="the runs this run's sub-action steps launched, oldest first"
    )
    visibility: Literal["full"]


AnyRunView = Annotated[RunView | RunSummary, Field(discriminator="visibility")]


class LogLineView(View):
    id: int
    seq: int | None = None
    at: str
    level: str
    step_id: str | None = None
    message: str


class ApprovalState(View):
    """The open approval after a decision, as the run's workflow holds it."""

    model_config = ConfigDict(extra="allow")

    request_id: str | None = None
    gate: str | None = None
    required: int | None = None
    status: str
    phase: str | None = None
    expires_at: str | None = None
    eligible: list[str] = Field(default_factory=list)
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    declines: list[dict[str, Any]] = Field(default_factory=list)


class Converged(View):
    converged: list[str]


class RunSecrets(View):
    secrets: dict[str, Any]


# ---- timers, events, audit -------------------------------------------------------------------


class TimerView(View):
    id: str
    workflow_id: str
    blueprint: str
    entity: str
    property: str
    state: str
    deadline: str | None = None
    original_deadline: str | None = None
    armed_at: str | None = None
    extensions: list[dict[str, Any]] | None = None
    reminders: list[dict[str, Any]] | None = None
    next_reminder: str | None = None
    expired_at: str | None = None
    on_expiry_run: str | None = None
    teardown: str | None = None
    error: str | None = None


class Owner(View):
    identifier: str
    email: str
    name: str | None = None


class TimerReportAnswer(View):
    timer: TimerView
    owners: list[Owner]


class TimerReportResult(View):
    status: int
    timer: TimerView | None = None
    owners: list[Owner] | None = None
    error: str | None = None


class TimerReportResults(View):
    results: list[TimerReportResult]


class EventView(View):
    """An event of the outbox; its payload's keys (``run``, ``timer``, …) sit next to these."""

    model_config = ConfigDict(extra="allow")

    id: int
    type: str
    at: str
    actor: str | None = None
    blueprint: str | None = None
    entity: str | None = None
    run_id: str | None = None
    diff: dict[str, Any] | None = None
    delivered: bool
    delivered_at: str | None = None
    attempts: int
    last_error: str | None = None


class AuditRecordView(View):
    id: int
    at: str
    actor: str
    on_behalf_of: str | None = None
    operation: str
    resource_type: str
    identifier: str | None = None
    blueprint: str | None = None
    run_id: str | None = None
    before: Any = None
    after: Any = None


# ---- the parameters of every list --------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[
    str | None, Query(description="the `next_cursor` of the previous page (opaque); none: the first page")
]


# ---- data sources ------------------------------------------------------------------------------


class _DataSourceFields(View):
    identifier: str
    title: str | None = None
    description: str | None = None
    kind: str
    config: dict[str, Any]
    schedule: str | None = None
    # Port Ocean's resource shape, as saved
    resources: list[dict[str, Any]]
    delete_stale: bool
    deletion_threshold: float
    create_missing_related_entities: bool
    security: dict[str, Any] | None = None


class DataSourceView(Stamped, _DataSourceFields):
    """A data source's definition as saved."""


class ItemErrorView(View):
    """One failing field of one raw item: ``key`` is the entity identifier the mapping produced,
    else the item's index in its page."""

    resource: int | None = None
    key: str | int | None = None
    pointer: str | None = None
    message: str


class PreviewView(View):
    entities: list[dict[str, Any]]
    errors: list[ItemErrorView]


class SyncCounts(View):
    seen: int
    created: int
    updated: int
    unchanged: int
    deleted: int
    failed: int


class SyncView(View):
    id: str
    data_source: str
    trigger: Literal["SCHEDULE", "API", "WEBHOOK"]
    status: Literal["RUNNING", "SUCCESS", "PARTIAL", "FAILURE"]
    counts: SyncCounts
    errors: list[ItemErrorView]
    warnings: list[str]
    started_at: str
    ended_at: str | None = None
    created_by: str | None = None
    # A push webhook's sync of a files source: the repositories it read (None: the whole source).
    repositories: list[str] | None = None


class PageApplied(View):
    """What one page of raw items did (a page sent again answers the same)."""

    seen: int
    created: int
    updated: int
    unchanged: int
    failed: int


class DeliveryView(View):
    id: int
    delivery_id: str
    status: Literal["PENDING", "APPLIED", "IGNORED", "FAILED"]
    received_at: str
    processed_at: str | None = None
    attempts: int
    outcome: dict[str, Any] | None = None


class DeliveryAccepted(View):
    delivery_id: str
    # false: a delivery with this id was stored before; it is not applied again
    accepted: bool


# ---- initiatives ---------------------------------------------------------------------------


class InitiativeTarget(View):
    blueprint: str
    scorecard: str
    level: str


class TeamProgress(View):
    """One owning team's entities in scope (``team`` null: entities without a team)."""

    team: str | None
    total: int
    passing: int


class FailingRule(View):
    scorecard: str
    identifier: str
    title: str
    level: str


class FailingEntity(View):
    entity: str
    blueprint: str
    team: list[str]
    rules: list[FailingRule]


class ProgressPoint(View):
    at: str
    total: int
    passing: int


class InitiativeProgress(View):
    """How many entities in scope meet every target, overall and per owning team; a page of the
    failing ones (follow ``next_cursor``); the burn-down points."""

    total: int
    passing: int
    teams: list[TeamProgress]
    failing: list[FailingEntity]
    next_cursor: str | None = None
    points: list[ProgressPoint]


class InitiativeReport(View):
    """The progress stored at a deadline."""

    deadline: str
    at: str
    total: int
    passing: int
    teams: list[TeamProgress]
    failing: list[FailingEntity]
    failing_truncated: bool
    points: list[ProgressPoint]


class InitiativeView(View):
    """Initiative as the API returns it: the definition, its workflow, the reminders sent and the
    final report."""

    identifier: str
    title: str
    description: str = ""
    owner: dict[str, Any] = Field(default_factory=dict)
    targets: list[InitiativeTarget]
    filter: dict[str, Any] | None = None
    starts_at: str | None = None
    deadline: str
    remind_before: list[str] = Field(default_factory=list)
    workflow_id: str
    reminders: list[dict[str, Any]] = Field(default_factory=list)
    final_report: InitiativeReport | None = None
    reported_at: str | None = None
    created_at: str
    updated_at: str
    created_by: str | None = None
    updated_by: str | None = None


class Member(View):
    identifier: str
    email: str
    name: str | None = None


class TeamAudience(View):
    team: str
    members: list[Member]


class ReminderRecorded(View):
    """A reminder as the worker records it: whether it is new, and who to tell."""

    recorded: bool
    initiative: dict[str, Any]
    total: int
    passing: int
    failing_teams: list[TeamAudience]
    owners: list[TeamAudience]


class TrendPoint(View):
    at: str
    total: int
    distribution: dict[str, int]


class ScorecardTrend(View):
    """The level distribution at the end of each interval, from the level history."""

    blueprint: str
    scorecard: str
    team: str | None = None
    interval: Literal["day", "week"]
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    levels: list[str]
    points: list[TrendPoint]


# ---- exemptions ----------------------------------------------------------------------------

ExemptionStatus = Literal["PENDING", "APPROVED", "DECLINED", "REVOKED", "EXPIRED"]


class ExemptionView(View):
    """An entity excused from one scorecard rule until ``expires_at``, once approved through its
    approval run (``run_id``: ``GET /v1/runs/{id}``, ``POST /v1/runs/{id}/approval``)."""

    id: str
    blueprint: str
    scorecard: str
    entity: str
    rule: str
    reason: str
    expires_at: str
    status: ExemptionStatus
    run_id: str
    requested_by: str
    # who approved or declined it, or revoked it
    decided_by: str | None = None
    created_at: str
    updated_at: str
    ended_at: str | None = None


class SignInCode(View):
    """A one-time sign-in link for the web portal: single use, valid until ``expires_at``."""

    code: str
    expires_at: str
    url: str


class PlannedStep(View):
    """One step of a dry run's plan. ``with``: its parameters rendered as the run would render
    them (secret inputs as ``${secret:NAME}``, ``run.id`` as ``<run.id>``; strings reading an
    earlier step's outputs or ``run.started_at`` as written). ``would_run``: its ``if``, null
    when that reads what only the run will know. ``needs``: the steps it waits for."""

    id: str
    uses: str
    with_: dict[str, Any] = Field(alias="with")
    would_run: bool | None
    destructive: bool
    needs: list[str]
    for_each: list[Any] | None = Field(
        None, description="a fanned-out step's items, when known before the run (its with per item)"
    )
    error: str | None = Field(None, description="why the run would fail at this step's templates")


class RunPlan(View):
    """What ``POST /v1/actions/{action}/runs?dry_run=true`` would launch; nothing was started
    or written. ``plan_hash`` is the same for the same action version, entity, inputs and
    rendered steps."""

    action: str
    action_version: int
    entity: str | None = None
    steps: list[PlannedStep]
    destructive: bool
    plan_hash: str


class RunOrPlan(RootModel[RunView | RunPlan]):
    """A launch's 200: the run its ``idempotency_key`` launched before, or with ``dry_run`` the
    plan."""

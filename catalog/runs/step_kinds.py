"""The step kinds an action can use (``uses``), shared by action checks and the workflow.

Kept free of heavy imports: the workflow sandbox imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Each step kind and the parameters it needs in ``with``.
STEP_KINDS: dict[str, tuple[str, ...]] = {
    "http.request": ("url",),
    "github.workflow_dispatch": ("repo", "workflow"),
    "gitlab.pipeline": ("project", "ref"),
    "jenkins.build": ("job",),
    "jira.create_issue": ("project", "summary"),
    "jira.transition": ("issue", "transition"),
    "jira.comment": ("issue", "body"),
    "aws.cloudformation.deploy_stack": ("stack_name", "template"),
    "aws.cloudformation.delete_stack": ("stack_name",),
    "slack.post_message": ("channel", "text"),
    "catalog.upsert_entity": ("blueprint", "identifier"),
    "catalog.delete_entity": ("blueprint", "identifier"),
    "sleep": ("duration",),
    "approval": ("approvers",),
    # Another action, run as a child run of this one (``with: {action, entity, inputs}``).
    "action": ("action",),
}

# Kinds that delete what they act on: a dry run flags their steps (and their action) as
# destructive whatever the step says.
DESTRUCTIVE_KINDS = frozenset({"catalog.delete_entity", "aws.cloudformation.delete_stack"})

# Kinds that run inside the workflow rather than as an activity.
WORKFLOW_KINDS = frozenset({"sleep", "approval", "action"})

# Kinds whose activities poll a vendor and heartbeat while they wait.
WAITING_KINDS = frozenset(
    {
        "github.workflow_dispatch",
        "gitlab.pipeline",
        "jenkins.build",
        "aws.cloudformation.deploy_stack",
        "aws.cloudformation.delete_stack",
    }
)

# Parameters only an action's author may set, as literal booleans: a template there would let
# the data it reads (an entity a member wrote) decide. ``allow_untagged`` lets a stack step touch
# stacks Gantry did not create for the run's entity.
LITERAL_FLAGS: dict[str, tuple[str, ...]] = {
    "aws.cloudformation.deploy_stack": ("allow_untagged",),
    "aws.cloudformation.delete_stack": ("allow_untagged",),
}


def param_problems(uses: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(parameter, message)`` for each parameter of a step's ``with`` its kind refuses."""
    return [
        (name, f"{uses}: '{name}' must be true or false (not a template)")
        for name in LITERAL_FLAGS.get(uses, ())
        if name in params and not isinstance(params[name], bool)
    ]


@dataclass(frozen=True)
class Vendor:
    """A vendor behind some step kinds (``{prefix}*``) and the variables it needs. The API warns
    about, and the worker stubs, the step kinds of a vendor whose variables are not all set."""

    name: str
    prefix: str
    # Environment variables that must all be set; GANTRY_* ones are Settings fields.
    variables: tuple[str, ...]
    # What a 401/403 from the vendor points at.
    credentials: tuple[str, ...]

    @property
    def not_configured(self) -> str:
        return f"{self.name} is not configured: set {_listing(self.variables)}"

    @property
    def credentials_hint(self) -> str:
        return f"check {_listing(self.credentials)}"

    def configured(self, settings: Any, aws_region: str | None = None) -> bool:
        """Whether ``settings`` (a :class:`config.Settings`) holds every variable; AWS's region
        comes from boto3 (``aws_region``), not from Settings."""
        if self.prefix == "aws.":
            return bool(aws_region)
        return all(_setting(settings, name.removeprefix("GANTRY_").lower()) for name in self.variables)


VENDORS = (
    Vendor("GitHub", "github.", ("GANTRY_GITHUB_TOKEN",), ("GANTRY_GITHUB_TOKEN",)),
    Vendor("GitLab", "gitlab.", ("GANTRY_GITLAB_TOKEN",), ("GANTRY_GITLAB_TOKEN",)),
    Vendor(
        "Jenkins",
        "jenkins.",
        ("GANTRY_JENKINS_URL", "GANTRY_JENKINS_USER", "GANTRY_JENKINS_TOKEN"),
        ("GANTRY_JENKINS_USER", "GANTRY_JENKINS_TOKEN"),
    ),
    Vendor(
        "Jira",
        "jira.",
        ("GANTRY_JIRA_URL", "GANTRY_JIRA_USER", "GANTRY_JIRA_TOKEN"),
        ("GANTRY_JIRA_USER", "GANTRY_JIRA_TOKEN"),
    ),
    Vendor("Slack", "slack.", ("GANTRY_SLACK_BOT_TOKEN",), ("GANTRY_SLACK_BOT_TOKEN",)),
    Vendor("AWS", "aws.", ("AWS_REGION",), ("the worker's AWS credentials",)),
)


def vendor_of(uses: str) -> Vendor | None:
    """The vendor behind a step kind; None for Gantry's own (``http.request``, ``catalog.*``…)."""
    return next((v for v in VENDORS if uses.startswith(v.prefix)), None)


# What a step acts on, by step kind prefix (first match): a label and the parameters naming it.
_TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("github.", "", ("repo", "workflow")),
    ("gitlab.", "project", ("project", "ref")),
    ("jenkins.", "job", ("job",)),
    ("jira.create_issue", "project", ("project",)),
    ("jira.", "issue", ("issue",)),
    ("aws.", "stack", ("stack_name",)),
    ("slack.", "channel", ("channel",)),
    ("catalog.", "", ("blueprint", "identifier")),
    ("action", "action", ("action", "entity")),
)
_MAX_TARGET = 200


def describe_target(uses: str, params: dict[str, Any]) -> str:
    """What a step acts on, for its error messages: ``POST https://…``, ``acme/app deploy.yml``,
    ``stack web-prod``, ``issue OPS-1``. Empty when its parameters do not say."""
    if uses == "http.request":
        return _cut(f"{str(params.get('method') or 'POST').upper()} {params.get('url', '')}".strip())
    for prefix, label, names in _TARGETS:
        if uses.startswith(prefix):
            values = [str(params[n]) for n in names if params.get(n) not in (None, "")]
            return _cut(" ".join([label, *values] if label else values)) if values else ""
    return ""


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TARGET else text[: _MAX_TARGET - 1] + "…"


def _setting(settings: Any, name: str) -> bool:
    value: Any = getattr(settings, name, None)
    reveal = getattr(value, "get_secret_value", None)  # a SecretStr
    return bool(reveal() if reveal is not None else value)


def _listing(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"

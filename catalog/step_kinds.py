"""The step kinds an action can use (``uses``), shared by action checks and the workflow.

Kept free of heavy imports: the workflow sandbox imports it.
"""

from __future__ import annotations

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
}

# Kinds that run inside the workflow rather than as an activity.
WORKFLOW_KINDS = frozenset({"sleep", "approval"})

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

"""The step kinds an action can use (``uses``), shared by action checks and the workflow.

Kept free of heavy imports: the workflow sandbox imports it.
"""

from __future__ import annotations

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

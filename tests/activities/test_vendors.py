"""build_activities: which step kinds a worker registers for which settings."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import build_activities
from config import Settings
from contracts.steps import VENDOR_NOT_CONFIGURED
from tests.activities.conftest import Env, step

CATALOG = {
    "catalog.upsert_entity",
    "catalog.delete_entity",
    "gantry.report_run",
    "gantry.reconcile_runs",
    "gantry.report_timer",
    "gantry.start_expiry_run",
    "gantry.run_status",
    "gantry.launch_automation_run",
    "gantry.regrade_scorecards",
    "slack.request_approval",
    "slack.update_approval",
    "slack.notify_timer_owners",
    # A data-source sync's activities: each vendor's client is built only when a sync needs it.
    "sources.open_sync",
    "sources.load_source",
    "sources.pull",
    "sources.complete_sync",
    # An initiative's reminders and deadline, an exemption's expiry.
    "initiatives.remind",
    "initiatives.report_deadline",
    "gantry.expire_exemption",
    # A sub-action step: the child run recorded by the catalog, then its outputs read back.
    "gantry.prepare_child_run",
    "gantry.child_run_outputs",
}
ALL = CATALOG | {
    "http.request",
    "github.workflow_dispatch",
    "gitlab.pipeline",
    "jenkins.build",
    "jira.create_issue",
    "jira.transition",
    "jira.comment",
    "slack.post_message",
    "aws.cloudformation.deploy_stack",
    "aws.cloudformation.delete_stack",
}


def _name(fn: Any) -> str:
    defn = activity._Definition.from_callable(fn)
    assert defn is not None and defn.name
    return defn.name


def _names(settings: Settings) -> set[str]:
    return {_name(fn) for fn in build_activities(settings)}


def _bare(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with no vendor configured (and no AWS region from anywhere)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    return Settings(_env_file=None)


def test_every_step_kind_is_registered_without_vendor_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # An unconfigured vendor's step kinds are there too: they fail saying what to set, rather
    # than Temporal's "not registered on this worker".
    assert _names(_bare(monkeypatch)) == ALL


@pytest.mark.parametrize(
    ("uses", "message"),
    [
        (
            "jira.create_issue",
            "Jira is not configured: set GANTRY_JIRA_URL, GANTRY_JIRA_USER and GANTRY_JIRA_TOKEN",
        ),
        ("github.workflow_dispatch", "GitHub is not configured: set GANTRY_GITHUB_TOKEN"),
        ("gitlab.pipeline", "GitLab is not configured: set GANTRY_GITLAB_TOKEN"),
        (
            "jenkins.build",
            "Jenkins is not configured: set GANTRY_JENKINS_URL, GANTRY_JENKINS_USER and GANTRY_JENKINS_TOKEN",
        ),
        ("slack.post_message", "Slack is not configured: set GANTRY_SLACK_BOT_TOKEN"),
        ("aws.cloudformation.deploy_stack", "AWS is not configured: set AWS_REGION"),
    ],
)
async def test_an_unconfigured_vendor_step_fails_at_once_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch, uses: str, message: str
) -> None:
    (fn,) = [f for f in build_activities(_bare(monkeypatch)) if _name(f) == uses]
    with pytest.raises(ApplicationError) as err:
        await Env().run(fn, step(uses, project="OPS", summary="x", repo="acme/app", workflow="d.yml"))
    assert err.value.type == VENDOR_NOT_CONFIGURED and err.value.non_retryable
    assert err.value.category == ApplicationErrorCategory.BENIGN
    assert err.value.message.endswith(f"not run: {message}"), err.value.message
    assert err.value.message.startswith(uses) and "not registered" not in err.value.message


def test_every_step_kind_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings = Settings(
        github_token="gh",
        gitlab_token="gl",
        jenkins_url="http://j",
        jenkins_user="u",
        jenkins_token="t",
        jira_url="http://jira",
        jira_user="u",
        jira_token="t",
        slack_bot_token="xoxb",
        webhook_secret="s",
    )
    assert _names(settings) == ALL

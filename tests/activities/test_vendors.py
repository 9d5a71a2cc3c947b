"""build_activities: which step kinds a worker registers for which settings."""

from __future__ import annotations

import pytest
from temporalio import activity

from activities import build_activities
from config import Settings

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


def _names(settings: Settings) -> set[str]:
    names = set()
    for fn in build_activities(settings):
        defn = activity._Definition.from_callable(fn)
        assert defn is not None and defn.name
        names.add(defn.name)
    return names


def test_only_http_request_without_vendor_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert _names(Settings(_env_file=None)) == CATALOG | {"http.request"}


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

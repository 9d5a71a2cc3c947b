"""The fake Jira is ``make run``'s Jira stand-in (devtools/standins/jira.py)."""

from devtools.standins.jira import TRANSITIONS, FakeJira

__all__ = ["TRANSITIONS", "FakeJira"]

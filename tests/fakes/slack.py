"""The fake Slack Web API is ``make run``'s Slack stand-in (devtools/standins/slack.py)."""

from devtools.standins.slack import FakeSlack

__all__ = ["FakeSlack"]

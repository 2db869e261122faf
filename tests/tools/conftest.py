"""The Slack fixtures (fake Slack, Candor over real HTTP) for the approval tests."""

from tests.handlers.conftest import candor, slack

__all__ = ["candor", "slack"]

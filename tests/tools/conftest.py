"""Slack fixtures for the approval tests: Candor over real HTTP with the fake Slack."""

from tests.handlers.conftest import candor, slack

__all__ = ["candor", "slack"]

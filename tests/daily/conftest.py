"""The daily features run through the real Slack surface: the handlers' fixtures."""

from tests.handlers.conftest import candor, slack

__all__ = ["candor", "slack"]

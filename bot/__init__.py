"""Candor's core: conversation manager, LLM gateway, settings, database. No Slack imports."""

__version__ = "0.1.0"

"""Candor's Slack surface: each module exposes `register(app, deps)`.

`register_all` wires them into one Bolt `AsyncApp`. `commands` (the /candor slash command)
and `home` (App Home) are optional until they land, so a missing module is skipped.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from bot.deps import Deps

log = logging.getLogger(__name__)

OPTIONAL_SURFACES = ("handlers.commands", "handlers.home")


def register_all(app: AsyncApp, deps: Deps) -> None:
    """Register every surface on `app`; `deps.extras["slack"]` must hold the SlackSurface."""
    from handlers import actions, events, images, review, shortcuts, tools

    events.register(app, deps)
    actions.register(app, deps)
    review.register(app, deps)
    tools.register(app, deps)
    shortcuts.register(app, deps)
    images.register(app, deps)
    for name in OPTIONAL_SURFACES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name != name:
                raise  # the module exists but is broken: fail loudly
            log.debug("%s is not there yet; skipping it", name)
            continue
        module.register(app, deps)

"""Fixtures for the spend tests: a real `SpendLedger` on the test database, and a
conversation manager that bills through it (the fake LLM server answers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.conversation import ConversationManager, Turn
from bot.deps import Deps
from bot.spend.guard import SpendLedger
from tests.spend.helpers import make_turn


class AlertInbox:
    """What the admins would have been told (the `alert` callback's texts)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, text: str) -> None:
        self.texts.append(text)


@pytest.fixture
def alerts() -> AlertInbox:
    return AlertInbox()


@pytest.fixture
def ledger(deps: Deps, alerts: AlertInbox) -> SpendLedger:
    return SpendLedger(deps.db, deps.settings, deps.clock, alert=alerts)


@pytest.fixture
def manager(deps: Deps, ledger: SpendLedger) -> ConversationManager:
    return ConversationManager(
        settings=deps.settings,
        db=deps.db,
        llm=deps.llm,
        tokens=deps.tokens,
        clock=deps.clock,
        spend=ledger,
    )


@pytest.fixture
def turn() -> Callable[..., Turn]:
    return make_turn

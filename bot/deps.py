"""The dependency container: the one place real clients are built.

`build_deps(settings)` creates the OpenAI client, the database, the token counter and the
conversation manager (and, as they land, the knowledge base and the spend ledger).
Tests build `Deps` from fakes and local parts with the same function or by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

from bot.clock import Clock, SystemClock
from bot.conversation import ConversationManager
from bot.db.engine import Database, open_database, upgrade
from bot.llm import LLMGateway
from bot.ports import KnowledgeSource, SpendGuard
from bot.settings import Settings
from bot.tokens import TokenCounter


@dataclass(frozen=True)
class Deps:
    """Everything a surface needs, built once per process."""

    settings: Settings
    db: Database
    openai: AsyncOpenAI
    llm: LLMGateway
    tokens: TokenCounter
    clock: Clock
    manager: ConversationManager
    knowledge: KnowledgeSource | None = None
    spend: SpendGuard | None = None
    # Surfaces attach their own clients here (e.g. the Slack Web API client).
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        from bot.kb import ScopedKnowledge

        if isinstance(self.knowledge, ScopedKnowledge):
            await self.knowledge.kb.close()
        await self.openai.close()
        await self.db.dispose()


def build_openai(settings: Settings) -> AsyncOpenAI:
    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else ""
    return AsyncOpenAI(
        # Local servers (llama.cpp, Ollama, vLLM) accept any key; the SDK insists on one.
        api_key=key or "not-needed",
        base_url=settings.openai.base_url or None,
        timeout=settings.openai.timeout_seconds,
        max_retries=settings.openai.max_retries,
    )


async def build_deps(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool | None = None,
    db: Database | None = None,
    knowledge: KnowledgeSource | None = None,
    spend: SpendGuard | None = None,
    with_spend: bool = True,
    with_knowledge: bool = True,
) -> Deps:
    """Build real clients from `settings`; migrates the embedded SQLite database itself.

    The spend ledger (budgets, prices, per-user accounting) is on unless `with_spend` is
    False or another `SpendGuard` is handed in.
    """
    settings.candor.data_dir.mkdir(parents=True, exist_ok=True)
    db = db or open_database(settings.database_url, echo=settings.db.echo)
    if migrate if migrate is not None else db.is_sqlite:
        await upgrade(db)
    tokens = TokenCounter(settings.candor.data_dir / "tiktoken")
    client = build_openai(settings)
    llm = LLMGateway(client, tokens)
    clock = clock or SystemClock()
    if spend is None and with_spend:
        from bot.spend import SpendLedger

        spend = SpendLedger(db, settings, clock)
    if knowledge is None and with_knowledge:
        from bot.kb import ScopedKnowledge, build_knowledge_base

        knowledge = ScopedKnowledge(build_knowledge_base(settings, tokens, client))
    manager = ConversationManager(
        settings=settings,
        db=db,
        llm=llm,
        tokens=tokens,
        clock=clock,
        knowledge=knowledge,
        spend=spend,
    )
    return Deps(
        settings=settings,
        db=db,
        openai=client,
        llm=llm,
        tokens=tokens,
        clock=clock,
        manager=manager,
        knowledge=knowledge,
        spend=spend,
    )

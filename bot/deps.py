"""The dependency container: the one place real clients are built.

`build_deps(settings)` creates the OpenAI client, the database, the token counter and the
conversation manager (and, as they land, the knowledge base and the spend ledger).
Tests build `Deps` from fakes and local parts with the same function or by hand.

A process that cannot work should not start: `build_deps` checks the database is
reachable and migrated (`DatabaseNotReady`), and the OpenAI client fails fast, with a
sentence naming `OPENAI_BASE_URL`, when nothing listens at a configured endpoint (the
SDK would otherwise retry a refused connection for seconds and blame a passing outage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from bot.clock import Clock, SystemClock
from bot.conversation import ConversationManager
from bot.db.engine import (
    Database,
    database_error,
    describe_url,
    ensure_ready,
    open_database,
    upgrade,
)
from bot.llm import LLMGateway, unreachable_error
from bot.llm import LLMUnreachable as LLMUnreachable  # where it was defined before
from bot.llm_http import FailFast
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
        await self.llm.aclose()  # the streaming session (closing the client does it too)
        await self.openai.close()
        await self.db.dispose()


#: The SDK's own connection limits (`openai._constants.DEFAULT_CONNECTION_LIMITS`).
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


class FailFastTransport(httpx2.AsyncBaseTransport):
    """Turns a failed connection into `LLMUnreachable` instead of a retry loop.

    For a configured `OPENAI_BASE_URL` the first refused connection ends the call: the
    server is not running, and retrying for seconds only hides that. For OpenAI itself
    the SDK keeps retrying (a network blip passes), and the last attempt's failure says
    to check the network. Raising a non-httpx error is what stops the SDK's retries.
    Streamed answers do not pass here (`bot.llm_http`); `FailFast` is the same policy
    for them.

    Closing it (as `AsyncOpenAI.close()` does) also runs `on_close`: `build_llm` puts the
    gateway's streaming session there, so whoever closes the client closes both.
    """

    def __init__(self, *, configured: bool, max_retries: int) -> None:
        self.inner = httpx2.AsyncHTTPTransport(limits=_LIMITS)
        self.policy = FailFast(configured=configured)
        self.max_retries = max_retries
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx2.ConnectError as error:
            attempt = int(request.headers.get("x-stainless-retry-count", "0") or 0)
            if not self.policy.gives_up(attempt, self.max_retries):
                raise
            where = f"{request.url.host}:{request.url.port or 443}"
            raise unreachable_error(where, configured=self.policy.configured) from error

    async def aclose(self) -> None:
        for close in self.on_close:
            await close()
        await self.inner.aclose()


def build_openai(settings: Settings) -> AsyncOpenAI:
    return _openai_client(settings)[0]


def _openai_client(settings: Settings) -> tuple[AsyncOpenAI, FailFastTransport]:
    key = settings.openai.api_key.get_secret_value() if settings.openai.api_key else ""
    configured = bool(settings.openai.base_url)
    transport = FailFastTransport(configured=configured, max_retries=settings.openai.max_retries)
    client = AsyncOpenAI(
        # Local servers (llama.cpp, Ollama, vLLM) accept any key; the SDK insists on one.
        api_key=key or "not-needed",
        base_url=settings.openai.base_url or None,
        timeout=settings.openai.timeout_seconds,
        max_retries=settings.openai.max_retries,
        http_client=DefaultAsyncHttpxClient(transport=transport),
    )
    return client, transport


def build_llm(settings: Settings, tokens: TokenCounter, clock: Clock) -> LLMGateway:
    """The gateway over a `build_openai` client (`gateway.client`). Streamed answers go
    over the gateway's own session, configured from that client, with the same fail-fast
    policy for a refused connection; closing the client closes that session too."""
    client, transport = _openai_client(settings)
    llm = LLMGateway(client, tokens, fail_fast=transport.policy, clock=clock)
    transport.on_close.append(llm.aclose)
    return llm


def open_checked_database(settings: Settings) -> Database:
    """`open_database` for `DATABASE_URL`; a failure (e.g. no folder for the SQLite file)
    is a `DatabaseNotReady` sentence naming the variable."""
    try:
        return open_database(
            settings.database_url, echo=settings.db.echo, writers=settings.db.writers
        )
    except Exception as error:
        url = settings.database_url
        raise database_error(error, describe_url(url), sqlite=url.startswith("sqlite")) from None


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
    if db is None:
        # Our own database: check it answers and is migrated before anything else starts.
        db = open_checked_database(settings)
        try:
            await ensure_ready(db, migrate=migrate if migrate is not None else db.is_sqlite)
        except BaseException:
            await db.dispose()
            raise
    elif migrate if migrate is not None else db.is_sqlite:
        await upgrade(db)
    tokens = TokenCounter(settings.candor.data_dir / "tiktoken")
    clock = clock or SystemClock()
    llm = build_llm(settings, tokens, clock)
    client = llm.client
    if spend is None and with_spend:
        from bot.spend.guard import SpendLedger

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

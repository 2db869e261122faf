"""What a call costs: cached tokens, estimated usage, unknown models, overrides, embeddings."""

from __future__ import annotations

import asyncio
import logging

import genai_prices
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.conversation import ConversationManager
from bot.db import repo
from bot.deps import Deps
from bot.llm import Usage
from bot.spend.guard import SpendLedger
from bot.spend.prices import normalize_model
from tests.fakes.openai_server import FakeOpenAIServer
from tests.spend.helpers import hold, ledger_rows, make_turn

REQUIRED_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
)


async def set_channel_model(deps: Deps, model: str) -> None:
    async with deps.db.sessions.begin() as session:
        row = await repo.get_or_create_channel_row(
            session, workspace_id="T1", channel_id="C1", now=deps.clock.now()
        )
        row.model = model


async def test_list_prices_cover_current_openai_models_and_the_local_model_is_free(
    ledger: SpendLedger,
) -> None:
    async with ledger.db.sessions() as session:
        for model in REQUIRED_MODELS:
            price = await ledger.prices.price_for(session, model, at=ledger.clock.now())
            assert price.source == "genai-prices", model
            assert price.input_micro_usd_per_m > 0, model
            assert price.cached_input_micro_usd_per_m <= price.input_micro_usd_per_m, model
        mini = await ledger.prices.price_for(session, "gpt-4o-mini", at=ledger.clock.now())
        local = await ledger.prices.price_for(session, "gemma3-270m", at=ledger.clock.now())
    assert mini.cached_input_micro_usd_per_m == 75_000
    assert local.source == "candor-local"
    assert local.cost_micro_usd(prompt_tokens=10**6, completion_tokens=10**6) == 0
    assert normalize_model("openai/gpt-4o-2024-08-06") == "gpt-4o"


async def test_cached_prompt_tokens_are_billed_at_the_cached_price(
    manager: ConversationManager, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("Cached!", prompt_tokens=1000, cached_tokens=800, completion_tokens=100)

    await manager.reply(make_turn(event_id="Ev-cache"))

    [row] = await ledger_rows(manager.db)
    # gpt-4o-mini: 200 * $0.15 + 800 * $0.075 + 100 * $0.60 per 1M tokens
    assert (row.prompt_tokens, row.cached_tokens, row.completion_tokens) == (1000, 800, 100)
    assert row.cost_micro_usd == 30 + 60 + 60
    assert row.estimated is False
    assert row.price_version == f"genai-prices@{genai_prices.__version__}"
    assert (row.workspace_id, row.channel_id, row.user_id, row.model) == (
        "T1",
        "C1",
        "U1",
        "gpt-4o-mini",
    )


async def test_a_stream_without_usage_is_billed_from_counted_tokens_and_marked_estimated(
    manager: ConversationManager, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.enqueue("An answer the server did not count for us.", usage=False)

    answer = await manager.reply(make_turn())

    [row] = await ledger_rows(manager.db)
    assert row.estimated is True
    assert answer.usage.estimated is True
    assert row.prompt_tokens == answer.usage.prompt_tokens > 0
    assert row.completion_tokens == answer.usage.completion_tokens > 0
    assert row.cost_micro_usd == -(
        -(row.prompt_tokens * 150_000 + row.completion_tokens * 600_000) // 1_000_000
    )


async def test_an_unknown_model_is_billed_at_the_default_price_with_one_warning(
    manager: ConversationManager,
    deps: Deps,
    fake_llm: FakeOpenAIServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await set_channel_model(deps, "acme-llm-7b")
    fake_llm.enqueue("One.", prompt_tokens=1000, completion_tokens=100)
    fake_llm.enqueue("Two.", prompt_tokens=1000, completion_tokens=100)

    with caplog.at_level(logging.WARNING, logger="bot.spend.prices"):
        await manager.reply(make_turn(thread_ts="1.1"))
        await manager.reply(make_turn(thread_ts="1.2"))

    warnings = [r.getMessage() for r in caplog.records if "acme-llm-7b" in r.getMessage()]
    assert len(warnings) == 1
    assert "default" in warnings[0]
    rows = await ledger_rows(deps.db)
    # Defaults: $10 in / $30 out per 1M tokens.
    assert [(r.model, r.cost_micro_usd, r.price_version) for r in rows] == [
        ("acme-llm-7b", 10_000 + 3_000, "default"),
    ] * 2


async def test_an_admin_price_overrides_the_table_until_removed(
    ledger: SpendLedger,
) -> None:
    await ledger.set_price(
        "gpt-4o-2024-08-06", input_usd_per_m=1.0, output_usd_per_m=2.0, by="UADMIN"
    )
    await ledger.set_price("acme-llm-7b", input_usd_per_m=0.5, output_usd_per_m=0.5)

    prices = {p.model: p for p in await ledger.list_prices()}
    assert prices["acme-llm-7b"].source == "override"
    assert prices["gpt-4o-2024-08-06"].input_micro_usd_per_m == 1_000_000
    assert prices["gpt-4o"].source == "genai-prices"

    async with ledger.db.sessions() as session:
        dated = await ledger.prices.price_for(session, "gpt-4o-2024-08-06", at=ledger.clock.now())
        family = await ledger.prices.price_for(session, "gpt-4o", at=ledger.clock.now())
    assert dated.version.startswith("override@")
    assert family.source == "genai-prices"

    assert await ledger.remove_price_override("acme-llm-7b") is True
    assert await ledger.remove_price_override("acme-llm-7b") is False
    async with ledger.db.sessions() as session:
        assert (
            await ledger.prices.price_for(session, "acme-llm-7b", at=ledger.clock.now())
        ).source == "default"


async def test_embedding_calls_are_billed_once_per_event_and_count_for_the_user(
    ledger: SpendLedger,
) -> None:
    cost = await ledger.record_embedding(
        workspace_id="T1",
        model="text-embedding-3-small",
        tokens=50_000,
        user_id="U1",
        channel_id="C1",
        event_id="Ev-embed",
    )
    again = await ledger.record_embedding(
        workspace_id="T1",
        model="text-embedding-3-small",
        tokens=50_000,
        user_id="U1",
        event_id="Ev-embed",
    )
    ingest = await ledger.record_embedding(
        workspace_id="T1", model="text-embedding-3-large", tokens=1_000_000
    )

    assert (cost, again, ingest) == (1_000, 0, 130_000)
    rows = await ledger_rows(ledger.db)
    assert [(r.kind, r.user_id, r.cost_micro_usd) for r in rows] == [
        ("embedding", "U1", 1_000),
        ("embedding", None, 130_000),
    ]
    assert rows[1].call_id.startswith("gen:")
    assert (await ledger.user_usage("U1")).spent_micro_usd == 1_000


async def test_many_settles_on_one_connection_all_bill(ledger: SpendLedger, deps: Deps) -> None:
    """Postgres plans a prepared statement generically after five runs on a connection;
    the ledger's ON CONFLICT must still find its partial unique index then."""
    for i in range(12):
        reservation = await hold(
            ledger,
            f"many-{i}",
            user="U-many",
            model="gpt-4o-mini",
            prompt_tokens=10,
            max_output_tokens=10,
        )
        await ledger.settle(
            reservation, model="gpt-4o-mini", usage=Usage(prompt_tokens=10, completion_tokens=5)
        )
    rows = await ledger_rows(deps.db, user_id="U-many")
    assert len([r for r in rows if r.status == "settled"]) == 12


async def test_a_failure_to_store_the_answer_never_costs_the_bill(
    manager: ConversationManager,
    ledger: SpendLedger,
    fake_llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bill and the answer's storing share one transaction; when storing fails, that
    # transaction rolls back, and the bill is settled again on its own.
    await ledger.set_price("gpt-4o-mini", input_usd_per_m=1.0, output_usd_per_m=2.0)
    fake_llm.enqueue("Deploy with `make ship`.", prompt_tokens=1000, completion_tokens=500)

    async def broken(*args: object, **kwargs: object) -> int:
        raise OperationalError("INSERT INTO answers", {}, Exception("disk full"))

    monkeypatch.setattr(repo, "store_exchange", broken)
    answer = await manager.reply(make_turn(event_id="Ev-store"))

    assert answer.text == "Deploy with `make ship`."
    assert answer.answer_id is None  # the thread's memory is what was lost
    [row] = await ledger_rows(manager.db)
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("settled", 1000, 500)
    assert row.cost_micro_usd == 1000 + 1000  # $1/M in, $2/M out
    usage = await ledger.user_usage("U1")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (2000, 0)


async def test_postgres_dropping_every_connection_mid_answer_still_bills_and_stores(
    manager: ConversationManager,
    ledger: SpendLedger,
    fake_llm: FakeOpenAIServer,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Postgres restarts while the model answers: the pooled connections (in use a moment
    # ago, so not pinged) are dead; the settle-and-store transaction fails on one, and the
    # bill and the answer go through on fresh connections.
    if database_url.startswith("sqlite"):
        pytest.skip("Postgres only (TEST_DATABASE_URL)")
    await ledger.set_price("gpt-4o-mini", input_usd_per_m=1.0, output_usd_per_m=2.0)
    fake_llm.delay = 0.4
    fake_llm.enqueue("Deploy with `make ship`.", prompt_tokens=1000, completion_tokens=500)

    answering = asyncio.create_task(manager.reply(make_turn(event_id="Ev-restart")))
    await asyncio.sleep(0.2)
    admin = create_async_engine(database_url)
    async with admin.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        await conn.commit()
    await admin.dispose()
    answer = await answering

    assert "doing them apart" in caplog.text  # the first transaction met a dead connection
    assert answer.answer_id is not None
    [row] = await ledger_rows(manager.db)
    assert (row.status, row.cost_micro_usd) == ("settled", 2000)
    usage = await ledger.user_usage("U1")
    assert (usage.spent_micro_usd, usage.held_micro_usd) == (2000, 0)

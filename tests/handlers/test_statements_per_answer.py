"""How much database work one answer costs: statements and sessions, pinned from above.

Issue 13 (throughput): every statement is a round trip (an aiosqlite thread hop, or a
network trip to Postgres) and every session a pool checkout, a BEGIN and a COMMIT or
ROLLBACK (and on Postgres, after a second idle, a ping). These tests count what one answer runs through
the real Slack path, so a change that adds a read or a transaction to every answer shows
here instead of only in a benchmark. The bounds are what the code does today; lower them
when it does less.

What one mention in a new thread runs (11 statements in 4 sessions; on SQLite two of them
are write transactions; the others are single statements, which on Postgres commit by
themselves, one round trip each):

- claim: INSERT processed_events;
- load: SELECT channel_settings (with the tool rules' verdict);
- reserve: SELECT model_prices UNION ALL SELECT spend_budgets (one statement), INSERT
  spend_reservations, the counter upsert (INSERT budget_usage ... ON CONFLICT DO UPDATE
  ... WHERE fits); on Postgres the last two are one statement, `SELECT ... FROM
  candor_hold_call(...)`, and the reserve is two statements that each commit by
  themselves (10 in all);
- settle, store and mark, one transaction (the reserve's price and budget reused): UPDATE
  spend_reservations, INSERT spend_ledger, the counter upsert, INSERT conversation_turns
  (both turns, one statement), INSERT answers, UPDATE processed_events (the claim marked
  answered with the answer it stands for).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.deps import Deps
from bot.spend.guard import SpendLedger
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.handlers.conftest import Candor

STATEMENTS_PER_ANSWER = 11
SESSIONS_PER_ANSWER = 4


@dataclass
class DatabaseWork:
    statements: list[str] = field(default_factory=list)
    checkouts: int = 0
    orm_sessions: int = 0  # ORM sessions that ran a statement

    def tables(self, verb: str) -> list[str]:
        """The table each statement starting with `verb` (`SELECT`, `INSERT`...) is
        about: the one after its own FROM / INTO / UPDATE, not a subquery's."""
        keyword = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE"}[verb]
        found = []
        for statement in self.statements:
            if not statement.upper().startswith(verb):
                continue
            depth, words = 0, []
            for word in statement.replace("(", " ( ").replace(")", " ) ").split():
                depth += (word == "(") - (word == ")")
                if depth == 0:
                    words.append(word)
            upper = [w.upper() for w in words]
            found.append(words[upper.index(keyword) + 1])
        return found


@contextmanager
def counting(deps: Deps) -> Iterator[DatabaseWork]:
    """Every statement the engine sends, and every connection taken from its pool."""
    work = DatabaseWork()
    engine = deps.db.engine.sync_engine

    def on_statement(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        work.statements.append(" ".join(statement.split()))

    def on_checkout(*_args: Any) -> None:
        work.checkouts += 1

    def on_session(*_args: Any) -> None:
        work.orm_sessions += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(Session, "after_begin", on_session)
    try:
        yield work
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(Session, "after_begin", on_session)


async def answer(candor: Candor, fake_llm: FakeOpenAIServer, text: str, user: str) -> None:
    fake_llm.enqueue(text, prompt_tokens=40, completion_tokens=9)
    status, _ = await candor.send.event(app_mention(f"<@UBOT> {text}?", user=user))
    assert status == 200
    await candor.idle()


async def test_one_answer_runs_a_bounded_number_of_statements_and_sessions(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    await answer(candor, fake_llm, "Warm up", user="U0")  # caches, first connections

    with counting(deps) as work:
        await answer(candor, fake_llm, "Deploys run with make deploy", user="U1")

    # What the user sees is the same answer, billed once and remembered.
    assert [m.text for m in candor.slack.messages("C1")][-1] == "Deploys run with make deploy"
    usage = await SpendLedger(deps.db, deps.settings, deps.clock).user_usage("U1")
    assert usage.calls == 1 and usage.spent_micro_usd > 0 and usage.held_micro_usd == 0
    assert len(work.statements) <= STATEMENTS_PER_ANSWER, "\n".join(work.statements)
    assert work.checkouts <= SESSIONS_PER_ANSWER
    # Only the settings are read through the ORM (they load mapped rows); the claim, the
    # reservation and the bill with the stored answer are Core on bare connections.
    assert work.orm_sessions == 1
    # Settle reuses what reserve read; the counter is one upsert each time; both turns
    # go in one INSERT; no tool rules are read where no rule allows a tool.
    reads = [s for s in work.statements if "model_prices" in s or "spend_budgets" in s]
    assert len(reads) == 1 and "spend_budgets" in reads[0] and "model_prices" in reads[0]
    assert "tool_permissions" not in work.tables("SELECT")
    assert work.tables("INSERT").count("conversation_turns") == 1
    holds = 2 if deps.db.is_sqlite else 1  # on Postgres the hold is inside the function
    assert work.tables("INSERT").count("budget_usage") == holds
    assert sum("candor_hold_call" in s for s in work.statements) == 2 - holds
    assert "budget_usage" not in work.tables("UPDATE")


async def test_a_channel_with_an_allowed_tool_still_reads_its_tool_rules(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps
) -> None:
    await deps.manager.tools.set_access(
        workspace_id="T1", channel_id="C1", name="builtin/current_time", allowed=True, actor_id="UA"
    )
    await answer(candor, fake_llm, "Warm up", user="U0")

    with counting(deps) as work:
        await answer(candor, fake_llm, "It is noon", user="U1")

    assert work.tables("SELECT").count("tool_permissions") == 1
    offered = [t["function"]["name"] for t in fake_llm.last.get("tools") or []]
    assert "current_time" in offered

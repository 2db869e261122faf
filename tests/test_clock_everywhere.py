"""Every timestamp Candor writes comes from the injected clock, never the wall clock.

Regression: conversation turns were stamped with `datetime.now()` while retention moved an
injected clock, so the retention test broke the day after its fixed date.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import DateTime, select

from bot.clock import FixedClock
from bot.db.models import Base, MissingTimestampError, ProcessedEventRow
from bot.deps import Deps
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers import make_turn

# Far from any real date, so a wall-clock timestamp cannot pass for the clock's.
LONG_AGO = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_every_row_of_an_answer_is_stamped_by_the_injected_clock(
    deps: Deps, fake_llm: FakeOpenAIServer, clock: FixedClock
) -> None:
    clock.set(LONG_AGO)
    fake_llm.enqueue("Deploy with `make ship`.")
    await deps.manager.reply(make_turn(event_id="E1"))

    stamped = 0
    async with deps.db.sessions() as session:
        for table in Base.metadata.sorted_tables:
            if table.name == "channel_settings":
                continue  # its seeded default row is dated by the migration
            columns = [c for c in table.columns if isinstance(c.type, DateTime)]
            if not columns:
                continue
            rows = (await session.execute(select(*columns).select_from(table))).all()
            for row in rows:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    assert _as_utc(value) == LONG_AGO, f"{table.name}.{column.name}"
                    stamped += 1
    # turns (2), the answer, the ledger row, the reservation and the budget counter at least
    assert stamped >= 5


async def test_a_write_without_the_clock_is_refused(deps: Deps) -> None:
    with pytest.raises(Exception) as caught:
        async with deps.db.write() as session:
            session.add(ProcessedEventRow(event_id="E-no-clock"))
    assert isinstance(caught.value, MissingTimestampError) or isinstance(
        getattr(caught.value, "orig", None), MissingTimestampError
    )

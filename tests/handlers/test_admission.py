"""Admission (`handlers.slack_io.Admission`): a few answers prepare at once, in the order
their messages came; each leaves when its LLM call starts, or after a short hold."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.deps import Deps
from handlers.slack_io import Admission
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.slack_events import app_mention
from tests.handlers.conftest import Candor


async def test_answers_get_in_in_the_order_they_came_and_leave_to_let_the_next_in() -> None:
    admission = Admission(slots=2, hold_seconds=30)
    inside: list[int] = []
    most = 0
    order: list[int] = []
    let_go = [asyncio.Event() for _ in range(5)]

    async def answer(i: int) -> None:
        nonlocal most
        async with admission.enter() as leave:
            order.append(i)
            inside.append(i)
            most = max(most, len(inside))
            await let_go[i].wait()
            inside.remove(i)
            leave()
            leave()  # a second leave gives up nothing more

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(answer(i)))
        await asyncio.sleep(0)
    for i in (1, 0, 2, 3, 4):
        await asyncio.sleep(0.01)
        let_go[i].set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert most == 2
    assert admission.gate.free == 2


async def test_an_answer_stuck_while_preparing_holds_the_next_back_only_briefly() -> None:
    admission = Admission(slots=1, hold_seconds=0.05)
    stuck = asyncio.Event()
    events: list[str] = []

    async def slow() -> None:
        async with admission.enter():
            events.append("slow in")
            await stuck.wait()  # a Slack lookup or a knowledge base that does not answer
            events.append("slow out")

    async def next_one() -> None:
        async with admission.enter():
            events.append("next in")

    first = asyncio.create_task(slow())
    await asyncio.sleep(0)
    await asyncio.wait_for(next_one(), 5)
    stuck.set()
    await first
    assert events == ["slow in", "next in", "slow out"]
    assert admission.gate.free == 1


async def test_an_answer_leaves_when_its_llm_call_starts(
    candor: Candor, fake_llm: FakeOpenAIServer, deps: Deps, monkeypatch: Any
) -> None:
    """One place only, held for as long as anything could take: still the three answers'
    LLM calls run at once, because each gave its place up as its call started."""
    candor.runtime.surface.admission = Admission(slots=1, hold_seconds=60)
    running = 0
    most = 0
    release = asyncio.Event()
    complete = deps.manager.llm.complete

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if most == 3:
            release.set()
        try:
            await asyncio.wait_for(release.wait(), 5)
            return await complete(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(deps.manager.llm, "complete", counted)
    for i in range(3):
        fake_llm.enqueue(f"Answer {i}.")
    for i in range(3):
        status, _ = await candor.send.event(app_mention(f"<@UBOT> question {i}?", user=f"U{i}"))
        assert status == 200
    await candor.idle()

    assert most == 3
    assert sorted(m.text for m in candor.slack.messages("C1")) == [
        "Answer 0.",
        "Answer 1.",
        "Answer 2.",
    ]
    assert candor.runtime.surface.admission.gate.free == 1

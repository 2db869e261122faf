"""`digest`: a task over many messages, in one call or in parts (map-reduce).

Every call goes through `ConversationManager.reply` with the task's instruction and its
messages as material, so the channel's settings (model, system message, redaction), the
user's budget (each part reserved and settled in the ledger; over budget raises
`OverBudget` before that part's call) and the confidence assessment apply as to any
answer. The messages are cut into parts that fit the channel model's context window
(after the system message, the instruction and the room for the answer); each part is
summarized, then the partial summaries are merged, again in parts if they do not fit.
The merged answer keeps the message numbers of the parts, so its [n] still point to the
original messages, and its citations are rebuilt from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bot.channels import EffectiveSettings
from bot.conversation import (
    MATERIAL_RULE,
    REFERENCE_HEADER,
    SAFETY_MARGIN,
    Answer,
    Citation,
    ConversationManager,
    Turn,
)
from bot.digest import tasks
from bot.digest.posts import Post, as_material
from bot.llm import Usage
from bot.ports import RetrievedHit
from bot.tokens import MESSAGE_OVERHEAD, REPLY_PRIMING, context_window
from knowledge import cited_indices

#: Share of the room a part fills: token counts of our tokenizer and the server's differ.
FILL = 0.85
#: Tokens kept for the rendered system message beyond its template, per part.
SYSTEM_SLACK = 200
#: Merging stops after this many rounds (each round divides the parts by at least two).
MAX_ROUNDS = 4
#: Longest message text put in a part; a longer one is cut (with a mark).
MAX_POST_CHARS = 12_000


async def digest(
    manager: ConversationManager,
    turn: Turn,
    posts: Sequence[Post],
    *,
    task: str,
) -> Answer:
    """Answer `turn` (its `text` is the task's question) over `posts` with `task`.

    Raises what `reply` raises (`OverBudget`, `ChannelDisabled`, `CandorError`s).
    """
    eff = await manager.channel_settings(turn.workspace_id, turn.channel_id)
    await manager.tokens.ensure(eff.model)  # the parts are cut by exact counts
    material = as_material([_cut(p) for p in posts])
    room = material_room(manager, eff, turn, task)
    parts = split(manager, eff, material, room)
    if len(parts) <= 1:
        answer = await manager.reply(
            dataclasses.replace(turn, task=task, material=parts[0] if parts else ())
        )
        return _cited(answer, material, [answer], parts=1)
    calls: list[Answer] = []
    summaries: list[str] = []
    for n, part in enumerate(parts, 1):
        sub = _sub_turn(
            turn, f"part:{n}", task=f"{task}\n\n{tasks.part(n, len(parts))}", material=part
        )
        answer = await manager.reply(sub)
        calls.append(answer)
        summaries.append(answer.text)
    for round_ in range(1, MAX_ROUNDS + 1):
        merged = _partials(summaries)
        merge_task = f"{task}\n\n{tasks.MERGE}"
        groups = split(manager, eff, merged, material_room(manager, eff, turn, merge_task))
        if len(groups) <= 1 or round_ == MAX_ROUNDS:
            final = dataclasses.replace(
                turn,
                text=tasks.MERGE_QUESTION,
                task=merge_task,
                material=groups[0] if groups else (),
            )
            answer = await manager.reply(final)
            calls.append(answer)
            return _cited(answer, material, calls, parts=len(parts))
        summaries = []
        for n, group in enumerate(groups, 1):
            sub = _sub_turn(
                turn,
                f"merge:{round_}:{n}",
                task=merge_task,
                material=group,
                text=tasks.MERGE_QUESTION,
            )
            answer = await manager.reply(sub)
            calls.append(answer)
            summaries.append(answer.text)
    raise AssertionError("unreachable")  # pragma: no cover


def material_room(
    manager: ConversationManager, eff: EffectiveSettings, turn: Turn, task: str
) -> int:
    """Tokens the material of one call may take in `eff.model`'s window."""
    model = eff.model
    window = context_window(model, manager.settings.candor.context_windows)
    budget = int(window * (1 - SAFETY_MARGIN)) - eff.max_answer_tokens - REPLY_PRIMING
    fixed = (
        manager.tokens.count(eff.system_message, model)
        + SYSTEM_SLACK
        + manager.tokens.count(task, model)
        + manager.tokens.count(MATERIAL_RULE, model)
        + manager.tokens.count(turn.text, model)
        + manager.tokens.count(REFERENCE_HEADER, model)
        + 3 * MESSAGE_OVERHEAD
    )
    return max(0, int((budget - fixed) * FILL))


def split(
    manager: ConversationManager,
    eff: EffectiveSettings,
    material: Sequence[RetrievedHit],
    room: int,
) -> list[tuple[RetrievedHit, ...]]:
    """`material` in consecutive parts of at most `room` tokens each (a part has at least
    one message, so a huge one still goes, and the manager cuts what does not fit)."""
    parts: list[tuple[RetrievedHit, ...]] = []
    current: list[RetrievedHit] = []
    used = 0
    for hit in material:
        cost = manager.tokens.count(_entry(hit), eff.model)
        if current and used + cost > room:
            parts.append(tuple(current))
            current, used = [], 0
        current.append(hit)
        used += cost
    if current:
        parts.append(tuple(current))
    return parts


def _entry(hit: RetrievedHit) -> str:
    """About what the manager's sources block spends on one hit."""
    return f"<source>\n[{hit.index}] {hit.title} ({hit.link})\n{hit.text}\n</source>"


def _cut(post: Post) -> Post:
    if len(post.text) <= MAX_POST_CHARS:
        return post
    return dataclasses.replace(post, text=post.text[:MAX_POST_CHARS] + " …(cut)")


def _partials(summaries: Sequence[str]) -> tuple[RetrievedHit, ...]:
    """Partial summaries as material for the merge (numbered past any message number,
    so a [n] in them is never mistaken for a part)."""
    return tuple(
        RetrievedHit(
            index=10_000 + n,
            text=text,
            title=f"Partial summary {n}",
            link="",
            source="partial-summary",
            scope="",
            score=1.0,
        )
        for n, text in enumerate(summaries, 1)
    )


def _sub_turn(
    turn: Turn,
    label: str,
    *,
    task: str,
    material: tuple[RetrievedHit, ...],
    text: str | None = None,
) -> Turn:
    """One intermediate call: billed under its own id, not remembered as a thread turn."""
    return dataclasses.replace(
        turn,
        text=text or turn.text,
        task=task,
        material=material,
        remember=False,
        event_id=f"{turn.event_id}:{label}" if turn.event_id else None,
    )


def _cited(
    answer: Answer, material: Sequence[RetrievedHit], calls: Sequence[Answer], *, parts: int
) -> Answer:
    """The final answer with citations to the original messages and the usage of every
    call it took (parts and merges), so the footer tells what the whole digest cost."""
    by_index = {hit.index: hit for hit in material}
    cited = sorted(i for i in cited_indices(answer.text) if i in by_index)
    answer.citations = [
        Citation(index=i, title=by_index[i].title, link=by_index[i].link, source=by_index[i].source)
        for i in cited
    ]
    if len(calls) > 1:
        answer.usage = Usage(
            prompt_tokens=sum(c.usage.prompt_tokens for c in calls),
            completion_tokens=sum(c.usage.completion_tokens for c in calls),
            cached_tokens=sum(c.usage.cached_tokens for c in calls),
            estimated=any(c.usage.estimated for c in calls),
        )
        answer.notices.append(f"The messages were summarized in {parts} parts, then merged.")
    return answer

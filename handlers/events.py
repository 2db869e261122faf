"""Mentions, DMs and thread follow-ups: when Candor answers, and the one answer it gives.

Where Candor answers (parsed here, decided by `bot/` where it is a rule):

- `app_mention` in a channel;
- every `message` in a DM (`channel_type == "im"`);
- a follow-up `message` in a thread Candor already answered (`manager.has_thread`).

Never: messages from bots (its own included), edits, deletions and other subtypes
(`file_share` and `thread_broadcast` are real messages), channels an admin disabled (no
word there). A channel message that mentions Candor arrives twice, as `app_mention` and as
`message`; the `message` copy is dropped here and, should both still run, the claim below
is keyed on the message (channel + ts), not on the event id, so only one answers.

Bolt acknowledges the event before the listener runs (`process_before_response=False`);
the listener only parses and hands the work to `SlackSurface.spawn`, a tracked task, so
the HTTP response never waits on the LLM and shutdown can drain answers. A few answers
prepare at once, in arrival order (`SlackSurface.admission`), each until its LLM call
starts. The claim in the
database (`repo.claim_event`) makes Slack's retries and a second replica harmless.

After a won claim everything runs in one `try` (`_answer_claimed`): any failure is one
sentence in the thread and the claim is marked `failed`, so a later retry of the same
message stays silent rather than answering after the apology. A claim whose process dies
before it is marked stays `claimed`; `bot.jobs.scheduler.sweep_stale_claims` tells the user in the
thread (through the `THREAD_NOTICE` registered here) and marks it `failed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant, AsyncBoltContext
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from bot.conversation import Loaded, Turn
from bot.db import repo
from bot.db.statements import Executor
from bot.deps import Deps
from bot.errors import CandorError, ChannelDisabled, StorageUnavailable
from bot.jobs.scheduler import THREAD_NOTICE
from bot.ports import OverBudget
from bot.spend.ledger import DuplicateCall
from handlers import directory, render, review, uploads
from handlers.incoming import Incoming, parse
from handlers.reply import Reply
from handlers.slack_io import Indicator, SlackSurface

log = logging.getLogger(__name__)

LEARN_FAILED = "I could not add those files to the knowledge base; please try again."


def surface_of(deps: Deps) -> SlackSurface:
    surface = deps.extras.get("slack")
    if not isinstance(surface, SlackSurface):
        raise RuntimeError("deps.extras['slack'] must hold the SlackSurface (see handlers.app)")
    return surface


def register(app: AsyncApp, deps: Deps) -> None:
    """Listen for mentions, DMs, thread follow-ups and assistant threads."""
    surface = surface_of(deps)

    async def notice(*, channel: str, thread_ts: str, text: str) -> None:
        await surface.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)

    # The stale-claim sweep (`bot.jobs.scheduler`) reports unanswered messages through this.
    deps.extras[THREAD_NOTICE] = notice

    async def on_event(body: dict[str, Any], context: AsyncBoltContext) -> None:
        incoming = parse(body, context)
        if incoming is not None:
            surface.spawn(answer(deps, surface, incoming))

    app.event("app_mention")(on_event)
    app.event("message")(on_event)
    # Renames, joins, leaves and profile changes drop what the directory cached.
    directory.register(app, surface.lookups)

    assistant = AsyncAssistant()

    @assistant.thread_started
    async def offer_prompts(set_suggested_prompts: AsyncSetSuggestedPrompts) -> None:
        try:
            await set_suggested_prompts(prompts=render.SUGGESTED_PROMPTS, title="Try asking:")
        except SlackApiError as exc:
            log.info("Could not set suggested prompts: %s", exc.response.get("error"))

    @assistant.thread_context_changed
    async def context_changed() -> None:
        """Candor reads the channel from each message, so there is nothing to store."""

    app.use(assistant)


async def answer(deps: Deps, surface: SlackSurface, incoming: Incoming) -> None:
    """Answer one message exactly once; every failure ends in one sentence (or silence)."""
    arrived = time.monotonic()
    async with surface.admission.enter() as prepared:
        await _answer(deps, surface, incoming, prepared, arrived)


async def _answer(
    deps: Deps,
    surface: SlackSurface,
    incoming: Incoming,
    prepared: Callable[[], None],
    arrived: float,
) -> None:
    known_thread = await _known_thread(deps, surface, incoming)
    if incoming.needs_known_thread and not known_thread:
        return
    try:
        claimed = await _claim(deps, incoming)
    except Exception:
        # Without the claim we cannot promise one answer; say so once and let Slack retry.
        log.exception("Could not claim %s", incoming.claim_key)
        await _say_once(surface, incoming, StorageUnavailable.user_message)
        return
    if not claimed:
        log.info("Already answered %s (event %s); skipping.", incoming.claim_key, incoming.event_id)
        return
    await _answer_claimed(deps, surface, incoming, known_thread, prepared, arrived)


async def _claim(deps: Deps, incoming: Incoming) -> bool:
    """Claim the message: one statement that commits by itself (on Postgres one round
    trip and no place among the writers; `Database.one_statement`)."""
    async with deps.db.one_statement(writes=True) as session:
        return await repo.claim_event(
            session,
            event_id=incoming.claim_key,
            kind=incoming.kind,
            now=deps.clock.now(),
            workspace_id=incoming.team_id,
            channel_id=incoming.channel,
            thread_ts=incoming.thread_ts,
            user_id=incoming.user,
        )


async def _load(deps: Deps, incoming: Incoming, known_thread: bool) -> Loaded | None:
    """The channel's settings and the thread's history, read after the claim without a
    transaction (one statement each, each committing by itself). None when they cannot
    be read: the answer then reads them itself, and a database still down gets the
    storage sentence there, with the claim marked."""
    try:
        async with deps.db.lookups() as session:
            return await deps.manager.load(
                session,
                workspace_id=incoming.team_id,
                channel_id=incoming.channel,
                thread_key=incoming.thread_key,
                with_history=known_thread,
            )
    except Exception:
        log.warning("Could not read the settings of %s", incoming.claim_key, exc_info=True)
        return None


async def _answer_claimed(
    deps: Deps,
    surface: SlackSurface,
    incoming: Incoming,
    known_thread: bool,
    prepared: Callable[[], None],
    arrived: float,
) -> None:
    """Everything after a won claim, in one `try`: it ends with the claim marked.

    Any failure is one sentence in the thread and the claim is marked `failed` (never
    released): the user has been told to try again, so a late Slack retry of the same
    message stays silent instead of answering after the apology. A crash that skips the
    `finally` leaves the claim `claimed`, and `bot.jobs.scheduler.sweep_stale_claims` reports it.
    """
    manager = deps.manager
    client = surface.client
    reply = Reply(
        client,
        channel=incoming.channel,
        thread_ts=incoming.thread_ts,
        team_id=incoming.team_id,
        user_id=incoming.user,
        pacer=surface.pacer,
    )
    indicator: Indicator | None = None
    status = "failed"
    marked = False  # marked `answered` with the stored answer
    try:
        if uploads.wants_to_learn(incoming):
            try:
                await uploads.learn(deps, surface, incoming)
            except Exception:
                log.exception("Learning the files of %s failed", incoming.claim_key)
                await _say_once(surface, incoming, LEARN_FAILED)
                return
            status = "learned"
            return
        loaded = await _load(deps, incoming, known_thread)
        if loaded is not None:
            settings = loaded.settings
        else:
            settings = await manager.channel_settings(incoming.team_id, incoming.channel)
        if not settings.enabled:
            status = "disabled"
            return
        indicator = await surface.start_indicator(
            incoming.channel,
            incoming.thread_ts,
            incoming.ts,
            incoming.is_dm,
            waited=time.monotonic() - arrived,
        )
        turn = await _turn(surface, incoming, known_thread)
        shown = indicator

        async def on_delta(text: str) -> None:
            shown.answer_showing()
            await reply.delta(text)

        async def answered(session: Executor) -> None:
            await _write_mark(session, deps, incoming, "answered")

        # The end of the answer first (before it is stored), then the indicator goes. The
        # claim is marked answered in the storing transaction once the answer is shown.
        result = await manager.reply(
            turn,
            on_delta=on_delta,
            loaded=loaded,
            before_llm=prepared,
            deliver=reply.finish,
            on_delivered=answered,
        )
        status = "answered"
        marked = result.delivery_recorded
        await indicator.stop()
        # A flagged answer goes to the review channel (never raises).
        await review.answer_delivered(
            deps, client, result, message_ts=reply.posted[0] if reply.posted else None
        )
    except OverBudget as exc:
        await client.chat_postEphemeral(
            channel=incoming.channel,
            user=incoming.user,
            thread_ts=incoming.thread_ts,
            text=exc.user_message,
        )
        status = "over_budget"
    except ChannelDisabled:
        status = "disabled"
    except DuplicateCall:
        # Another delivery of this message is being (or was) answered: stay silent.
        status = "duplicate"
    except CandorError as exc:
        log.info("Answer to %s failed: %r", incoming.claim_key, exc)
        await _tell(reply, exc.user_message)
    except BaseException as exc:
        if isinstance(exc, SQLAlchemyError):
            # A database failure outside the manager (settings lookup): the storage sentence.
            log.exception("Answer to %s failed: database", incoming.claim_key)
            await _tell(reply, StorageUnavailable.user_message)
        elif isinstance(exc, Exception):
            log.exception("Answer to %s failed", incoming.claim_key)
            await _tell(reply, render.GENERIC_FAILURE)
        else:  # cancelled: Candor is shutting down
            status = "cut_off"
            await _tell(reply, None)
            raise
    finally:
        if indicator is not None:
            await indicator.stop()
        if not (marked and status == "answered"):
            await _mark(deps, incoming, status)


async def _known_thread(deps: Deps, surface: SlackSurface, incoming: Incoming) -> bool:
    """Whether Candor already talks in the message's thread (the database says, else Slack).

    Asked before the claim, so channel chatter in threads Candor is not part of costs no
    write. When the database cannot answer, a follow-up without a mention asks Slack
    whether Candor posted in that thread: if so it goes on (and, should the database still
    be down, gets the storage sentence); if not it stays out of a stranger's thread.
    """
    if not incoming.in_thread:
        return False
    try:
        return await deps.manager.has_thread(incoming.thread_key)
    except Exception:
        log.warning("Could not look up thread %s", incoming.thread_key, exc_info=True)
    if not incoming.needs_known_thread:
        return False  # only decides whether to rebuild history from Slack; it will
    history = await surface.thread_history(
        incoming.channel, incoming.thread_ts, incoming.ts, incoming.bot_user_id, incoming.bot_id
    )
    return any(message.role == "assistant" for message in history)


async def _turn(surface: SlackSurface, incoming: Incoming, known_thread: bool) -> Turn:
    history = None
    if incoming.in_thread and not known_thread:
        history = await surface.thread_history(
            incoming.channel, incoming.thread_ts, incoming.ts, incoming.bot_user_id, incoming.bot_id
        )
    return Turn(
        workspace_id=incoming.team_id,
        channel_id=incoming.channel,
        thread_ts=incoming.thread_ts,
        user_id=incoming.user,
        text=incoming.text,
        event_id=incoming.event_id or incoming.claim_key,
        attachments=await surface.attachments(list(incoming.files)),
        user_name=await surface.user_name(incoming.user),
        locale=await surface.user_locale(incoming.user),
        channel_name="a direct message"
        if incoming.is_dm
        else await surface.channel_name(incoming.channel),
        is_dm=incoming.is_dm,
        history_fallback=history or None,
    )


async def _say_once(surface: SlackSurface, incoming: Incoming, sentence: str) -> None:
    try:
        await surface.client.chat_postMessage(
            channel=incoming.channel, thread_ts=incoming.thread_ts, text=sentence
        )
    except Exception:
        log.exception("Could not tell the user about a failure")


async def _tell(reply: Reply, sentence: str | None) -> None:
    """Show a failure (or the cut-off note when `sentence` is None); never raise."""
    try:
        if sentence is None:
            await reply.cut_off()
        else:
            await reply.fail(sentence)
    except Exception:
        log.exception("Could not tell the user about a failure")


async def _mark(deps: Deps, incoming: Incoming, status: str) -> None:
    """Record how the claimed message ended; never raise (the sweep catches a miss)."""
    try:
        async with deps.db.one_statement(writes=True) as session:
            await _write_mark(session, deps, incoming, status)
    except Exception:
        log.warning("Could not mark %s as %s", incoming.claim_key, status, exc_info=True)


async def _write_mark(session: Executor, deps: Deps, incoming: Incoming, status: str) -> None:
    await repo.mark_event(session, event_id=incoming.claim_key, status=status, now=deps.clock.now())

"""Message shortcuts: *Summarize this thread*, *Translate*, *Ask Candor about this*.

Each is listed in the app manifest (`bot.cli.manifest.SHORTCUTS`) and arrives as a
`message_action` with the clicked message. Bolt acknowledges it first; the work runs in
a task the surface tracks (as answers do), and everything model-side goes through
`bot.digest` and the conversation manager with the *source channel's* settings, budget
and ledger, and its messages as data (never instructions).

Who may: in a private channel (or group DM) only its members (`handlers.daily.may_read`,
checked on the click and again when the summary modal is submitted: a modal is not a
permission); anyone else gets one sentence, only to them, and nothing is read, sent to
the model or posted in the channel.

- *Summarize this thread* opens a small modal: post the summary in the thread, or show it
  only to me (ephemeral). Its points cite the messages as [n], rendered as links to them.
- *Translate* shows the message in the clicking user's Slack language (`users.info`
  locale), ephemerally.
- *Ask Candor about this* opens a DM with the message quoted, and answers in that DM
  thread; the user's follow-ups there are an ordinary DM conversation.

None of them makes the source thread Candor's own (`Turn.remember=False`): a summary does
not make Candor answer every later message in that thread.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError

from bot.conversation import Turn, as_data
from bot.deps import Deps
from bot.digest import Post, digest, tasks
from bot.errors import CandorError
from handlers import daily, render
from handlers.directory import SlackDirectory
from handlers.events import surface_of
from handlers.slack_io import SlackSurface

log = logging.getLogger(__name__)

SUMMARIZE = "candor_summarize"
TRANSLATE = "candor_translate"
ASK = "candor_ask"
SUMMARIZE_MODAL = "candor_summarize_modal"
WHERE_BLOCK = "where"
WHERE_INPUT = "choice"
IN_THREAD = "thread"
ONLY_ME = "me"
NOTHING_TO_SUMMARIZE = "There is nothing in this thread I can summarize."
NOTHING_TO_TRANSLATE = "That message has no text I can translate."


@dataclass(frozen=True)
class Clicked:
    """The message a shortcut was used on, and who used it where."""

    team_id: str
    channel_id: str
    user_id: str
    ts: str
    thread_ts: str | None
    text: str
    author: str

    @property
    def root(self) -> str:
        """The thread the message belongs to (its own ts when it starts one)."""
        return self.thread_ts or self.ts

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Clicked:
        message = body.get("message") or {}
        return cls(
            team_id=str((body.get("team") or {}).get("id") or ""),
            channel_id=str((body.get("channel") or {}).get("id") or ""),
            user_id=str((body.get("user") or {}).get("id") or ""),
            ts=str(message.get("ts") or body.get("message_ts") or ""),
            thread_ts=str(message["thread_ts"]) if message.get("thread_ts") else None,
            text=str(message.get("text") or ""),
            author=str(message.get("user") or message.get("username") or ""),
        )


def summarize_modal(clicked: Clicked) -> dict[str, Any]:
    """Where the summary goes: the thread, or only the user (the default)."""
    options = [
        _option(ONLY_ME, "Only me (nobody else sees it)"),
        _option(IN_THREAD, "Post it in the thread, for everyone there"),
    ]
    return {
        "type": "modal",
        "callback_id": SUMMARIZE_MODAL,
        "private_metadata": json.dumps(
            {"team": clicked.team_id, "channel": clicked.channel_id, "ts": clicked.root}
        ),
        "title": {"type": "plain_text", "text": "Summarize this thread"},
        "submit": {"type": "plain_text", "text": "Summarize"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": WHERE_BLOCK,
                "label": {"type": "plain_text", "text": "Who should see the summary?"},
                "element": {
                    "type": "radio_buttons",
                    "action_id": WHERE_INPUT,
                    "options": options,
                    "initial_option": options[0],
                },
            }
        ],
    }


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def register(app: AsyncApp, deps: Deps) -> None:
    """Listen for the three message shortcuts and the summary modal."""
    surface = surface_of(deps)
    directory = SlackDirectory(surface.client)

    async def on_summarize(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        clicked = Clicked.parse(body)
        if not await daily.may_read(directory, clicked.channel_id, clicked.user_id):
            await respond(text=daily.NOT_A_MEMBER, response_type="ephemeral")
            return
        await surface.client.views_open(
            trigger_id=str(body.get("trigger_id") or ""), view=summarize_modal(clicked)
        )

    async def on_summarize_submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        meta = json.loads(str(view.get("private_metadata") or "{}"))
        state = (view.get("state") or {}).get("values") or {}
        choice = ((state.get(WHERE_BLOCK) or {}).get(WHERE_INPUT) or {}).get("selected_option")
        clicked = Clicked(
            team_id=str(meta.get("team") or ""),
            channel_id=str(meta.get("channel") or ""),
            user_id=str((body.get("user") or {}).get("id") or ""),
            ts=str(meta.get("ts") or ""),
            thread_ts=None,
            text="",
            author="",
        )
        in_thread = isinstance(choice, dict) and choice.get("value") == IN_THREAD
        surface.spawn(_summarize(deps, surface, directory, clicked, context.bot_user_id, in_thread))

    def members_only(
        work: Callable[[Deps, SlackSurface, Clicked], Coroutine[Any, Any, None]],
    ) -> Callable[..., Awaitable[None]]:
        """A shortcut that runs `work` in the background for members of the channel only."""

        async def handler(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
            await ack()
            clicked = Clicked.parse(body)
            if not await daily.may_read(directory, clicked.channel_id, clicked.user_id):
                await respond(text=daily.NOT_A_MEMBER, response_type="ephemeral")
                return
            surface.spawn(work(deps, surface, clicked))

        return handler

    on_translate = members_only(_translate)
    on_ask = members_only(_ask)

    app.shortcut(SUMMARIZE)(on_summarize)
    app.view(SUMMARIZE_MODAL)(on_summarize_submit)
    app.shortcut(TRANSLATE)(on_translate)
    app.shortcut(ASK)(on_ask)


async def _turn(surface: SlackSurface, clicked: Clicked, kind: str, text: str) -> Turn:
    """A task's turn in the source channel: its settings, scopes, budget and ledger."""
    return Turn(
        workspace_id=clicked.team_id,
        channel_id=clicked.channel_id,
        thread_ts=clicked.root,
        user_id=clicked.user_id,
        text=text,
        event_id=f"{kind}:{clicked.channel_id}:{clicked.ts}:{uuid.uuid4().hex[:12]}",
        user_name=await surface.user_name(clicked.user_id),
        channel_name=await surface.channel_name(clicked.channel_id),
        locale=await surface.user_locale(clicked.user_id),
        is_dm=clicked.channel_id.startswith("D"),
        remember=False,
    )


async def _summarize(
    deps: Deps,
    surface: SlackSurface,
    directory: SlackDirectory,
    clicked: Clicked,
    bot_user_id: str | None,
    in_thread: bool,
) -> None:
    client = surface.client
    try:
        if not await daily.may_read(directory, clicked.channel_id, clicked.user_id):
            await _tell(surface, clicked, daily.NOT_A_MEMBER)
            return
        posts = await daily.thread_posts(
            surface, clicked.channel_id, clicked.root, bot_user_id=bot_user_id
        )
        if not posts:
            await _tell(surface, clicked, NOTHING_TO_SUMMARIZE)
            return
        turn = await _turn(surface, clicked, "summarize", tasks.SUMMARIZE_QUESTION)
        answer = await digest(deps.manager, turn, posts, task=tasks.SUMMARIZE)
        heading = (
            f"*Summary of this thread*, asked for by <@{clicked.user_id}>"
            if in_thread
            else "*Summary of this thread* (only you can see this)"
        )
        blocks = daily.answer_blocks(answer, posts, heading=heading)
        if in_thread:
            await client.chat_postMessage(
                channel=clicked.channel_id,
                thread_ts=clicked.root,
                text="Summary of this thread",
                blocks=blocks,
            )
        else:
            await client.chat_postEphemeral(
                channel=clicked.channel_id,
                user=clicked.user_id,
                thread_ts=clicked.root,
                text="Summary of this thread",
                blocks=blocks,
            )
    except Exception as exc:
        await _tell(surface, clicked, _sentence(exc, "summarize"))


async def _translate(deps: Deps, surface: SlackSurface, clicked: Clicked) -> None:
    try:
        if not clicked.text.strip():
            await _tell(surface, clicked, NOTHING_TO_TRANSLATE)
            return
        post = await _post_of(surface, clicked)
        turn = await _turn(surface, clicked, "translate", tasks.TRANSLATE_QUESTION)
        language = tasks.translation_language(turn.locale)
        answer = await digest(deps.manager, turn, [post], task=tasks.translate(turn.locale))
        heading = f"*Translation into {language}* (only you can see this)"
        context = {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": render.context_line(answer)}],
        }
        blocks = [*daily.sections(f"{heading}\n{daily.quote(answer.text)}"), context]
        await surface.client.chat_postEphemeral(
            channel=clicked.channel_id,
            user=clicked.user_id,
            thread_ts=clicked.thread_ts,
            text=f"Translation into {language}",
            blocks=blocks,
        )
    except Exception as exc:
        await _tell(surface, clicked, _sentence(exc, "translate"))


async def _ask(deps: Deps, surface: SlackSurface, clicked: Clicked) -> None:
    client = surface.client
    dm = ""
    try:
        opened = await client.conversations_open(users=clicked.user_id)
        dm = str((opened.get("channel") or {}).get("id") or "")
        post = await _post_of(surface, clicked)
        where = f"<#{clicked.channel_id}>" if clicked.channel_id[:1] in "CG" else "a conversation"
        about = f"<{post.link}|this message>" if post.link else "this message"
        intro = (
            f"You asked me about {about} in {where}:\n{daily.quote(clicked.text)}\n"
            "I answer in this thread; reply here to ask more."
        )
        root = str((await client.chat_postMessage(channel=dm, text=intro)).get("ts") or "")
        turn = await _turn(surface, clicked, "ask", tasks.ASK_QUESTION)
        channel = as_data(turn.channel_name or "a Slack conversation")
        answer = await digest(deps.manager, turn, [post], task=tasks.ask(channel))
        await client.chat_postMessage(
            channel=dm,
            thread_ts=root,
            text=answer.text[:3000] or render.EMPTY_ANSWER,
            blocks=daily.answer_blocks(answer, [post]),
        )
    except Exception as exc:
        sentence = _sentence(exc, "answer")
        if dm:
            try:
                await client.chat_postMessage(channel=dm, text=sentence)
                return
            except SlackApiError:
                pass
        await _tell(surface, clicked, sentence)


async def _post_of(surface: SlackSurface, clicked: Clicked) -> Post:
    name = (await surface.user_name(clicked.author)) if clicked.author else None
    link = await daily.Links(surface.client, clicked.channel_id).link(clicked.ts, clicked.thread_ts)
    return Post(clicked.ts, name or clicked.author or "someone", clicked.text, link)


def _sentence(exc: Exception, what: str) -> str:
    """One sentence for a failure (never the exception's text)."""
    if isinstance(exc, CandorError):
        return exc.user_message
    if isinstance(exc, SlackApiError):
        log.info("Slack refused a shortcut (%s): %s", what, exc.response.get("error"))
        return daily.CANNOT_READ
    log.exception("The %s shortcut failed", what)
    return render.GENERIC_FAILURE


async def _tell(surface: SlackSurface, clicked: Clicked, sentence: str) -> None:
    """Tell only the user: ephemeral where they clicked, else in a DM; never raises."""
    client = surface.client
    try:
        await client.chat_postEphemeral(
            channel=clicked.channel_id,
            user=clicked.user_id,
            thread_ts=clicked.thread_ts,
            text=sentence,
        )
        return
    except SlackApiError:
        pass
    try:
        opened = await client.conversations_open(users=clicked.user_id)
        dm = str((opened.get("channel") or {}).get("id") or "")
        await client.chat_postMessage(channel=dm, text=sentence)
    except Exception:
        log.exception("Could not tell %s about a shortcut failure", clicked.user_id)

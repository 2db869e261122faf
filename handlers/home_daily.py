"""The everyday part of the App Home tab: a private "Ask Candor" box, "Catch me up", and
the user's recent threads with Candor.

- **Ask Candor** opens a modal with a question box; on submit the modal turns into
  "thinking…" at once (Slack wants an answer within 3 seconds) and is updated with the
  answer, footer included, when the conversation manager has it. The question is asked as
  in the user's DM with Candor (its settings, budget and ledger) and is not remembered as
  a thread; nobody else sees it.
- **Catch me up** opens a modal with a channel picker and an optional `since`; the result
  (`handlers.daily.catch_up`, members only) replaces the modal the same way.
- **Your recent threads with Candor**: the last five Slack threads in which Candor
  answered the user (`bot.digest.recent`), each linked to its permalink.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Turn
from bot.deps import Deps
from bot.digest import InvalidSince, parse_since
from bot.digest.recent import recent_threads
from bot.errors import CandorError
from handlers import daily, render
from handlers.events import surface_of

log = logging.getLogger(__name__)

ASK_ACTION = "candor_home_ask"
CATCHUP_ACTION = "candor_home_catchup"
ASK_MODAL = "candor_home_ask_modal"
CATCHUP_MODAL = "candor_home_catchup_modal"
QUESTION_BLOCK = "question"
QUESTION_INPUT = "text"
CHANNEL_BLOCK = "channel"
CHANNEL_INPUT = "channel"
SINCE_BLOCK = "since"
SINCE_INPUT = "since"
THINKING = "_Thinking…_"
READING = "_Reading the channel…_"
NO_THREADS = "_No threads yet: mention @Candor in a channel or send it a direct message._"
SNIPPET_CHARS = 80


async def home_blocks(
    deps: Deps, client: AsyncWebClient, *, team_id: str, user_id: str
) -> list[dict[str, Any]]:
    """The prompt box, the catch-up button and the recent threads, for `user_id`."""
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {
            "type": "section",
            "block_id": "candor_home_prompt",
            "text": {
                "type": "mrkdwn",
                "text": "*Ask Candor privately* — only you see the question and the answer.",
            },
            "accessory": _button("Ask Candor…", ASK_ACTION, primary=True),
        },
        {
            "type": "section",
            "block_id": "candor_home_catchup",
            "text": {
                "type": "mrkdwn",
                "text": "*Catch me up* — what happened in a channel you are in, with links.",
            },
            "accessory": _button("Catch me up…", CATCHUP_ACTION),
        },
    ]
    lines: list[str] = []
    try:
        threads = await recent_threads(deps.db, workspace_id=team_id, user_id=user_id)
    except Exception:
        log.exception("Could not load the recent threads of %s", user_id)
        threads = []
    for thread in threads:
        where = "Direct message" if thread.channel_id.startswith("D") else f"<#{thread.channel_id}>"
        snippet = _snippet(thread.last_answer)
        try:
            got = await client.chat_getPermalink(
                channel=thread.channel_id, message_ts=thread.thread_ts
            )
            link = str(got.get("permalink") or "")
        except SlackApiError:
            link = ""
        shown = f"<{link}|{snippet}>" if link else snippet
        lines.append(f"• {where} · {shown} _({thread.answered_at:%Y-%m-%d})_")
    recent = "\n".join(lines) if lines else NO_THREADS
    blocks.append(
        {
            "type": "section",
            "block_id": "candor_home_recent",
            "text": {"type": "mrkdwn", "text": f"*Your recent threads with Candor*\n{recent}"},
        }
    )
    return blocks


def _snippet(text: str) -> str:
    line = " ".join(text.split())
    line = line if len(line) <= SNIPPET_CHARS else line[: SNIPPET_CHARS - 1] + "…"
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "/")
    return render.defuse_pings(line) or "(empty answer)"


def _button(text: str, action_id: str, *, primary: bool = False) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": action_id,
    }
    if primary:
        button["style"] = "primary"
    return button


def ask_modal() -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ASK_MODAL,
        "title": {"type": "plain_text", "text": "Ask Candor"},
        "submit": {"type": "plain_text", "text": "Ask"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": QUESTION_BLOCK,
                "label": {"type": "plain_text", "text": "Your question (only you see the answer)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": QUESTION_INPUT,
                    "multiline": True,
                    "max_length": 3000,
                },
            }
        ],
    }


def catchup_modal() -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": CATCHUP_MODAL,
        "title": {"type": "plain_text", "text": "Catch me up"},
        "submit": {"type": "plain_text", "text": "Catch me up"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": CHANNEL_BLOCK,
                "label": {"type": "plain_text", "text": "Channel"},
                "element": {
                    "type": "conversations_select",
                    "action_id": CHANNEL_INPUT,
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                },
            },
            {
                "type": "input",
                "block_id": SINCE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Since"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": SINCE_INPUT,
                    "placeholder": {
                        "type": "plain_text",
                        "text": "2h, 3d, yesterday or 2026-11-20 (default: 24 hours)",
                    },
                },
            },
        ],
    }


def result_modal(title: str, heading: str, body: str) -> dict[str, Any]:
    """A modal showing `body` (mrkdwn) under a `heading` line."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": heading}]},
            *daily.sections(body)[:90],
        ],
    }


def _value(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    values = (view.get("state") or {}).get("values") or {}
    found = (values.get(block) or {}).get(action)
    return found if isinstance(found, dict) else {}


def register(app: AsyncApp, deps: Deps) -> None:
    """The two Home buttons and their modals."""
    surface = surface_of(deps)

    async def on_ask(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await surface.client.views_open(trigger_id=str(body["trigger_id"]), view=ask_modal())

    async def on_catchup(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await surface.client.views_open(trigger_id=str(body["trigger_id"]), view=catchup_modal())

    async def on_ask_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        question = str(_value(view, QUESTION_BLOCK, QUESTION_INPUT).get("value") or "").strip()
        if not question:
            await ack(response_action="errors", errors={QUESTION_BLOCK: "Type a question."})
            return
        heading = "You asked: " + render.defuse_pings(_snippet(question))
        await ack(response_action="update", view=result_modal("Ask Candor", heading, THINKING))
        user = body.get("user") or {}
        surface.spawn(
            _answer(
                deps,
                team_id=str((body.get("team") or {}).get("id") or user.get("team_id") or ""),
                user_id=str(user.get("id") or ""),
                view_id=str(view.get("id") or ""),
                question=question,
                heading=heading,
            )
        )

    async def on_catchup_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        channel = str(_value(view, CHANNEL_BLOCK, CHANNEL_INPUT).get("selected_conversation") or "")
        since = str(_value(view, SINCE_BLOCK, SINCE_INPUT).get("value") or "").strip() or None
        try:
            parse_since(since, now=deps.clock.now())
        except InvalidSince as exc:
            await ack(response_action="errors", errors={SINCE_BLOCK: exc.user_message})
            return
        heading = f"Catch-up on <#{channel}>"
        await ack(response_action="update", view=result_modal("Catch me up", heading, READING))
        user = body.get("user") or {}
        surface.spawn(
            _catch_up(
                deps,
                team_id=str((body.get("team") or {}).get("id") or user.get("team_id") or ""),
                user_id=str(user.get("id") or ""),
                view_id=str(view.get("id") or ""),
                channel=channel,
                since=since,
                heading=heading,
            )
        )

    app.action(ASK_ACTION)(on_ask)
    app.action(CATCHUP_ACTION)(on_catchup)
    app.view(ASK_MODAL)(on_ask_submit)
    app.view(CATCHUP_MODAL)(on_catchup_submit)


async def _answer(
    deps: Deps, *, team_id: str, user_id: str, view_id: str, question: str, heading: str
) -> None:
    """Answer a Home question as in the user's DM with Candor, into the modal."""
    surface = surface_of(deps)
    try:
        opened = await surface.client.conversations_open(users=user_id)
        dm = str((opened.get("channel") or {}).get("id") or "")
        key = uuid.uuid4().hex[:12]
        turn = Turn(
            workspace_id=team_id,
            channel_id=dm,
            thread_ts=f"home-{key}",
            user_id=user_id,
            text=question,
            event_id=f"home:{user_id}:{key}",
            user_name=await surface.user_name(user_id),
            locale=await surface.user_locale(user_id),
            channel_name="a direct message",
            is_dm=True,
            remember=False,
        )
        answer = await deps.manager.reply(turn)
        text = render.defuse_pings(render.to_mrkdwn(answer.text)) or render.EMPTY_ANSWER
        body = f"{text}\n\n{render.footer_text(answer)}"
    except Exception as exc:
        body = _sentence(exc)
    await _show(deps, view_id, result_modal("Ask Candor", heading, body))


async def _catch_up(
    deps: Deps,
    *,
    team_id: str,
    user_id: str,
    view_id: str,
    channel: str,
    since: str | None,
    heading: str,
) -> None:
    try:
        body = await daily.catch_up(
            deps, team_id=team_id, user_id=user_id, channel_id=channel, since=since
        )
    except Exception as exc:
        body = _sentence(exc)
    await _show(deps, view_id, result_modal("Catch me up", heading, body))


def _sentence(exc: Exception) -> str:
    if isinstance(exc, CandorError):
        return exc.user_message
    log.exception("A Home-tab request failed")
    return render.GENERIC_FAILURE


async def _show(deps: Deps, view_id: str, view: dict[str, Any]) -> None:
    try:
        await surface_of(deps).client.views_update(view_id=view_id, view=view)
    except SlackApiError as exc:
        log.info("Could not update the Home modal: %s", exc.response.get("error"))

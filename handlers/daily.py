"""What the shortcuts, `/candor catchup` and the Home tab share on Slack's side.

- who may read a channel (`may_read`): a private channel (or group DM) only its members,
  through the `SlackDirectory` (`conversations.members`); a catch-up only members of any
  channel;
- a thread's or a channel's messages as `bot.digest.Post`s (`thread_posts`,
  `channel_posts`), each with its permalink: one `chat.getPermalink` gives the workspace's
  archive URL and the others are built from it (one call per message would be slow and
  rate limited on a busy channel), with author names from the surface's short cache;
- an answer rendered with its [n] as links to the messages (`answer_text`,
  `answer_blocks`); message text is defused so nothing becomes a live `@channel` ping.

Everything model-side goes through `bot.digest` and the conversation manager.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.conversation import Answer, Turn
from bot.deps import Deps
from bot.digest import Post, digest, parse_since, tasks
from handlers import render
from handlers.directory import SlackDirectory
from handlers.events import surface_of
from handlers.slack_io import SlackSurface, strip_mention

log = logging.getLogger(__name__)

NOT_A_MEMBER = "Only members of that channel can use Candor on its messages."
NOT_A_MEMBER_CATCHUP = "You can only catch up on channels you are a member of."
CANNOT_READ = "I can't read that conversation: invite Candor to the channel first."
NOTHING_NEW = "Nothing was posted in <#{channel}> since {since}."
NAME_A_CHANNEL = "Name a channel to catch up on: `/candor catchup #channel [since]`."
#: Pages of 200 messages a catch-up reads at most (the newest first, then older).
MAX_HISTORY_PAGES = 5
#: Section blocks hold at most 3,000 characters.
SECTION_CHARS = 2900
_CITES = re.compile(r"\[(\d{1,5}(?:\s*,\s*\d{1,5})*)\]")
_KEPT_SUBTYPES = (None, "file_share", "thread_broadcast", "me_message")


async def may_read(
    directory: SlackDirectory, channel_id: str, user_id: str, *, members_only: bool = False
) -> bool:
    """Whether `user_id` may have Candor read `channel_id`'s messages.

    A private channel or group DM: its members only (`members_only`: any channel). A
    Slack error counts as no: a refusal is one sentence, a leak is not undone.
    """
    try:
        if not members_only:
            if not await directory.is_private(channel_id) and not channel_id.startswith("G"):
                return True
        return user_id in await directory.members(channel_id)
    except SlackApiError as exc:
        log.info("Could not check %s in %s: %s", user_id, channel_id, exc.response.get("error"))
        return False


class Links:
    """Permalinks of a channel's messages, built from one `chat.getPermalink`."""

    def __init__(self, client: AsyncWebClient, channel: str) -> None:
        self.client = client
        self.channel = channel
        self._base: str | None = None

    async def link(self, ts: str, thread_ts: str | None = None) -> str:
        if self._base is None:
            try:
                got = await self.client.chat_getPermalink(channel=self.channel, message_ts=ts)
                url = str(got.get("permalink") or "")
            except SlackApiError:
                url = ""
            self._base = url.split("/archives/", 1)[0] if "/archives/" in url else ""
        if not self._base:
            return ""
        link = f"{self._base}/archives/{self.channel}/p{ts.replace('.', '')}"
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={self.channel}"
        return link


async def _posts(
    surface: SlackSurface,
    channel: str,
    messages: Sequence[dict[str, Any]],
    *,
    bot_user_id: str | None,
) -> list[Post]:
    links = Links(surface.client, channel)
    posts: list[Post] = []
    for m in messages:
        if m.get("subtype") not in _KEPT_SUBTYPES:
            continue
        if bot_user_id and m.get("user") == bot_user_id:
            continue  # Candor's own answers are not news
        text = strip_mention(str(m.get("text") or ""), bot_user_id)
        if not text:
            continue
        user = str(m.get("user") or "")
        name = (await surface.user_name(user)) if user else None
        author = name or str(m.get("username") or user or "someone")
        ts = str(m.get("ts") or "")
        posts.append(Post(ts, author, text, await links.link(ts, m.get("thread_ts"))))
    return posts


async def thread_posts(
    surface: SlackSurface, channel: str, thread_ts: str, *, bot_user_id: str | None
) -> list[Post]:
    """The thread's messages, oldest first (Candor's own left out)."""
    messages: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_HISTORY_PAGES):
        response = await surface.client.conversations_replies(
            channel=channel, ts=thread_ts, limit=200, cursor=cursor
        )
        messages.extend(response.get("messages") or [])
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return await _posts(surface, channel, messages, bot_user_id=bot_user_id)


async def channel_posts(
    surface: SlackSurface, channel: str, since: datetime, *, bot_user_id: str | None
) -> list[Post]:
    """The channel's messages since `since`, oldest first (the newest 1,000 at most)."""
    messages: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_HISTORY_PAGES):
        response = await surface.client.conversations_history(
            channel=channel, oldest=f"{since.timestamp():.6f}", limit=200, cursor=cursor
        )
        messages.extend(response.get("messages") or [])
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    oldest = since.timestamp()
    messages = [m for m in messages if float(m.get("ts") or 0) >= oldest]
    messages.sort(key=lambda m: float(m.get("ts") or 0))
    return await _posts(surface, channel, messages, bot_user_id=bot_user_id)


async def catch_up(
    deps: Deps, *, team_id: str, user_id: str, channel_id: str, since: str | None
) -> str:
    """What happened in `channel_id` since `since`, as mrkdwn with linked citations.

    Only for members of the channel; the source channel's settings and the user's budget
    apply (a long channel is summarized in parts, each billed; over budget raises
    `OverBudget` before the call that does not fit). Raises `CandorError`s with their
    sentence; a Slack refusal is `CANNOT_READ`.
    """
    if not channel_id or channel_id[:1] not in ("C", "G"):
        return NAME_A_CHANNEL
    surface = surface_of(deps)
    if not await may_read(SlackDirectory(surface.client), channel_id, user_id, members_only=True):
        return NOT_A_MEMBER_CATCHUP
    start = parse_since(since, now=deps.clock.now())
    when = f"{start:%Y-%m-%d %H:%M} UTC"
    try:
        bot_user_id = str((await surface.client.auth_test()).get("user_id") or "") or None
        posts = await channel_posts(surface, channel_id, start, bot_user_id=bot_user_id)
    except SlackApiError as exc:
        log.info("Could not read %s for a catch-up: %s", channel_id, exc.response.get("error"))
        return CANNOT_READ
    if not posts:
        return NOTHING_NEW.format(channel=channel_id, since=when)
    key = uuid.uuid4().hex[:12]
    turn = Turn(
        workspace_id=team_id,
        channel_id=channel_id,
        thread_ts=f"catchup-{key}",
        user_id=user_id,
        text=tasks.CATCHUP_QUESTION,
        event_id=f"catchup:{channel_id}:{key}",
        user_name=await surface.user_name(user_id),
        channel_name=await surface.channel_name(channel_id),
        locale=await surface.user_locale(user_id),
        remember=False,
    )
    answer = await digest(deps.manager, turn, posts, task=tasks.catchup(when))
    return (
        f"*Catch-up on <#{channel_id}> since {when}* ({len(posts)} messages)\n"
        f"{answer_text(answer, posts)}\n{render.footer_text(footer(answer))}"
    )


def link_citations(text: str, posts: Sequence[Post]) -> str:
    """`[2]` / `[2, 5]` in mrkdwn `text` as links to those messages."""

    def one(n: str) -> str:
        index = int(n)
        if 1 <= index <= len(posts) and posts[index - 1].link:
            return f"<{posts[index - 1].link}|{index}>"
        return n

    def group(match: re.Match[str]) -> str:
        return "[" + ", ".join(one(n.strip()) for n in match.group(1).split(",")) + "]"

    return _CITES.sub(group, text)


def answer_text(answer: Answer, posts: Sequence[Post]) -> str:
    """The answer as mrkdwn with its citations linked (no footer)."""
    text = render.defuse_pings(render.to_mrkdwn(answer.text)) or render.EMPTY_ANSWER
    return link_citations(text, posts)


def footer(answer: Answer) -> Answer:
    """The answer as the footer should show it: the [n] are links already, so no
    sources line repeating them."""
    return dataclasses.replace(answer, citations=[])


def sections(text: str) -> list[dict[str, Any]]:
    """`text` in section blocks of at most `SECTION_CHARS` characters, cut at lines."""
    blocks: list[dict[str, Any]] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > SECTION_CHARS:
            if current:
                blocks.append(_section(current))
                current = ""
            blocks.append(_section(line[:SECTION_CHARS]))
            line = line[SECTION_CHARS:]
        if current and len(current) + 1 + len(line) > SECTION_CHARS:
            blocks.append(_section(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    if current.strip():
        blocks.append(_section(current))
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def answer_blocks(
    answer: Answer, posts: Sequence[Post], *, heading: str | None = None
) -> list[dict[str, Any]]:
    """Heading, the answer with linked citations, and the usual footer (feedback included)."""
    text = answer_text(answer, posts)
    if heading:
        text = f"{heading}\n{text}"
    return sections(text) + render.footer_blocks(footer(answer))


def quote(text: str, limit: int = 2000) -> str:
    """A message quoted as mrkdwn (`> ` lines), cut at `limit`, pings defused."""
    body = text if len(text) <= limit else text[: limit - 1] + "…"
    body = render.defuse_pings(body)
    return "\n".join(f"> {line}" for line in body.split("\n"))

"""Jobs of the review loop: the weekly review digest and the Ask-a-human reminder.

- `review_digest` (`CANDOR_JOBS_REVIEW_DIGEST_CRON`, Mondays 09:00): to the workspace's
  review channel (`SLACK_REVIEW_CHANNEL`), how many answers came up for review in the last
  seven days (flagged, 👎, Ask a human), where they stand (open, resolved, corrected), the
  👎 votes cast, and the items open longest with a link to each. Posted through the
  surface's `AdminPoster` (`deps.extras[ADMIN_POSTER]`); links come from the surface's
  client (`deps.extras[SLACK_CLIENT]`), and an item whose link Slack will not give is
  listed without one.
- `ask_human_reminders` (`CANDOR_JOBS_ASK_HUMAN_REMINDERS_CRON`, every 10 minutes): an Ask
  a human still open `CANDOR_ASK_HUMAN_REMINDER_HOURS` after it was pressed gets one
  reminder in its thread, mentioning the channel's experts when it has any. One only: the
  reminder is claimed with `UPDATE ... WHERE reminded_at IS NULL AND status = 'open'`
  before it is posted (through `deps.extras[THREAD_NOTICE]`), so two replicas never both
  remind, and an item resolved or corrected meanwhile is left alone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.deps import Deps
from bot.jobs.digests import ADMIN_POSTER, AdminPoster
from bot.jobs.scheduler import THREAD_NOTICE, ThreadNotice
from bot.jobs.sync import SLACK_CLIENT
from bot.review import experts as experts_mod
from bot.review.digest import due_reminders, mark_reminded, week_summary
from bot.review.items import KIND_ASK_HUMAN, KIND_FLAGGED, KIND_THUMBS_DOWN, ReviewItem

log = logging.getLogger(__name__)

#: Open items the digest lists (the ones waiting longest).
DIGEST_TOP = 5
_SNIPPET = 80


class Permalinks(Protocol):
    """The slice of the Slack client the digest uses."""

    async def chat_getPermalink(self, *, channel: str, message_ts: str) -> Any: ...


def _plain(text: str) -> str:
    """People's words as inert text: Slack's escapes, so no `<!channel>` or link survives."""
    text = " ".join(text.split())
    text = text[: _SNIPPET - 1].rstrip() + "…" if len(text) > _SNIPPET else text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _age(since: datetime, now: datetime) -> str:
    since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    hours = int((now - since).total_seconds() // 3600)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


async def _link(client: Permalinks | None, item: ReviewItem) -> str | None:
    """The reviewers' message of the item (its buttons), else the answer's thread."""
    if client is None:
        return None
    channel, ts = (
        (item.review_channel, item.review_ts)
        if item.review_channel and item.review_ts
        else (item.channel_id, item.thread_ts)
    )
    try:
        response = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except Exception:
        log.info("No permalink for review item %s", item.review_id)
        return None
    link = response.get("permalink")
    return str(link) if link else None


_KINDS = ((KIND_FLAGGED, "flagged"), (KIND_THUMBS_DOWN, "👎"), (KIND_ASK_HUMAN, "Ask a human"))


async def review_digest(deps: Deps) -> str:
    """Post the week's review numbers and the longest-open items to the review channel."""
    channel = deps.settings.slack.review_channel
    poster: AdminPoster | None = deps.extras.get(ADMIN_POSTER)
    if not channel:
        return "no review channel set"
    if poster is None:
        return "no surface to post through"
    now = deps.clock.now()
    since = now - timedelta(days=7)
    async with deps.db.sessions() as session:
        week = await week_summary(session, since=since, top=DIGEST_TOP)
    kinds = ", ".join(f"{week.by_kind.get(kind, 0)} {label}" for kind, label in _KINDS)
    status = week.by_status
    lines = [
        f"*Weekly review digest* for {since.date().isoformat()} to {now.date().isoformat()}",
        f"Came up for review: {week.raised} answers ({kinds}); {week.thumbs_down_votes} 👎 votes.",
        f"Where they stand: {status.get('open', 0)} open, {status.get('resolved', 0)} resolved, "
        f"{status.get('corrected', 0)} corrected.",
    ]
    if not week.open_total:
        lines.append("No answer is waiting for review. :tada:")
    else:
        lines.append(f"Open for review in all: {week.open_total}. Waiting longest:")
        client: Permalinks | None = deps.extras.get(SLACK_CLIENT)
        for n, (item, raised_at) in enumerate(week.oldest_open, 1):
            question = _plain(item.question) or "(question not recorded)"
            link = await _link(client, item)
            shown = f"<{link}|{question}>" if link else question
            why = dict(_KINDS).get(item.kind, item.kind)
            lines.append(
                f"{n}. {shown} ({why} in <#{item.channel_id}>, waiting {_age(raised_at, now)})"
            )
    await poster.post(channel=channel, text="\n".join(lines))
    return f"posted to {channel}: {week.raised} raised, {week.open_total} open"


def reminder_text(experts: list[str], waited: str) -> str:
    """What the thread reads when an Ask a human waited too long."""
    if experts:
        mentions = " ".join(f"<@{user}>" for user in experts)
        return (
            f"⏰ This question has waited {waited} for a person: {mentions}, "
            "could one of you take a look?"
        )
    return f"⏰ This question has waited {waited} for a person; the reviewers still have it."


async def ask_human_reminders(deps: Deps) -> str:
    """Remind each Ask a human unanswered for `CANDOR_ASK_HUMAN_REMINDER_HOURS`, once."""
    notice: ThreadNotice | None = deps.extras.get(THREAD_NOTICE)
    if notice is None:
        return "no surface to post through"
    now = deps.clock.now()
    wait = timedelta(hours=deps.settings.candor.ask_human_reminder_hours)
    async with deps.db.sessions() as session:
        due = await due_reminders(session, asked_before=now - wait)
    sent = 0
    for reminder in due:
        async with deps.db.write() as session:
            if not await mark_reminded(session, review_id=reminder.review_id, now=now):
                continue  # resolved meanwhile, or another replica reminded it
            experts = await experts_mod.list_experts(
                session, workspace_id=reminder.workspace_id, channel_id=reminder.channel_id
            )
        try:
            await notice(
                channel=reminder.channel_id,
                thread_ts=reminder.thread_ts,
                text=reminder_text(experts, _age(reminder.asked_at, now)),
            )
        except Exception:
            # Claimed already: one missed reminder beats the same reminder every 10 minutes.
            log.exception(
                "Could not post the Ask-a-human reminder of review %s", reminder.review_id
            )
            continue
        sent += 1
    return f"{sent} reminders"

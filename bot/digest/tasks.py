"""The instruction of each task, added to the channel's system message.

The question each task sends (`Turn.text`) is written by Candor, in English; the
messages themselves arrive as material (`bot.digest.posts`), never in the instruction.
"""

from __future__ import annotations

from bot import language

SUMMARIZE_QUESTION = "Summarize this thread."
SUMMARIZE = (
    "Task: summarize the Slack thread whose messages are in the reference data, for someone "
    "who has not read it. Write a few short bullet points: what was discussed, what was "
    "decided, and what is still open (with who owns it, when the messages say). End each "
    "point with the numbers of the messages it comes from, as [n]. Do not invent anything "
    "the messages do not say."
)
CATCHUP_QUESTION = "Catch me up on this channel."
CATCHUP = (
    "Task: catch the reader up on a Slack channel: its messages since {since} are in the "
    "reference data, oldest first. Write short bullet points of what happened: decisions, "
    "announcements, questions still waiting for an answer, and anything that asks the reader "
    "to act. Skip small talk. End each point with the numbers of the messages it comes "
    "from, as [n]. If nothing of note happened, say so in one sentence."
)
PART = (
    "This is part {part} of {parts} of the messages; another step merges the parts, so "
    "summarize only this part, in the same form, citing the message numbers as [n]."
)
MERGE_QUESTION = "Merge these partial summaries into one."
MERGE = (
    "The reference data holds partial summaries of consecutive parts of the messages, in "
    "order. Merge them into one summary in the same form, removing repetition. Keep the "
    "message numbers [n] inside them exactly as they are (they point to the original "
    "messages); never cite a partial summary itself."
)
TRANSLATE_QUESTION = "Translate this message."
TRANSLATE = (
    "Task: translate the Slack message in the reference data into {language}. Reply with "
    "the translation only: no preamble, no notes and no citation. Keep names, @-mentions, "
    "links, code and formatting as they are. If it is already in {language}, reply with it "
    "unchanged."
)
ASK_QUESTION = "What is this message about?"
ASK = (
    "Task: the user opened a conversation with you about the Slack message in the reference "
    "data (from {channel}). Say briefly what it says and what, if anything, it asks of the "
    "reader, citing it as [1], then offer to answer questions about it."
)

#: Slack's locales beyond the languages `bot.language` detects.
_MORE_LANGUAGES = {
    "ja": "Japanese",
    "ko": "Korean",
    "zh-cn": "Simplified Chinese",
    "zh-tw": "Traditional Chinese",
    "zh": "Chinese",
    "ru": "Russian",
    "pl": "Polish",
    "sv": "Swedish",
    "da": "Danish",
    "nb": "Norwegian",
    "fi": "Finnish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "cs": "Czech",
    "he": "Hebrew",
    "ar": "Arabic",
    "hi": "Hindi",
    "id": "Indonesian",
    "vi": "Vietnamese",
    "th": "Thai",
}
DEFAULT_LANGUAGE = "English"


def translation_language(locale: str | None) -> str:
    """The language a translation for a user with Slack locale `locale` goes into
    (`fr-FR` → French, `ja-JP` → Japanese); English when Slack did not say."""
    code = language.locale_language(locale)
    if code is not None:
        return language.LANGUAGES[code].name
    tag = (locale or "").replace("_", "-").lower()
    return _MORE_LANGUAGES.get(tag) or _MORE_LANGUAGES.get(tag.split("-")[0]) or DEFAULT_LANGUAGE


def translate(locale: str | None) -> str:
    return TRANSLATE.format(language=translation_language(locale))


def catchup(since: str) -> str:
    return CATCHUP.format(since=since)


def ask(channel: str) -> str:
    return ASK.format(channel=channel)


def part(n: int, of: int) -> str:
    return PART.format(part=n, parts=of)

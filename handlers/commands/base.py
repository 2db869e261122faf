"""What every `/candor` subcommand shares: the invocation, and reading its arguments.

A channel is named with Slack's escaped mention (`<#C123|name>`, sent when the command
escapes channels), a raw channel ID, or `#name` (looked up with `conversations.list`); no
channel means the current one, and `--workspace` or `default` means the workspace default.
A user is named with `<@U123|name>` or a member ID.

Each subject module lists its subcommands as `Subcommand` records; the dispatcher puts
them in one `Registry`, which routes by name and writes the usage text from them.

The subject modules (settings, knowledge, spend, admins) import this module and never
each other, so no import circle can form between them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.admin.service import AdminService
from bot.admin.settings import InvalidValue, Target
from bot.deps import Deps
from bot.settings import Settings
from handlers import admin_views as views
from handlers.directory import user_lookup

_CHANNEL_MENTION = re.compile(r"^<#([CGD][A-Z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
_CHANNEL_NAME = re.compile(r"^#([a-z0-9_\-]{1,80})$")
_USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_WORKSPACE_WORDS = ("--workspace", "default", "workspace-default")
#: conversations.list pages we read to find `#name` before asking for a mention instead.
_MAX_NAME_PAGES = 5


@dataclass
class Invocation:
    """One `/candor` call: who, where, with which arguments, and how to reach Slack."""

    deps: Deps
    admin: AdminService
    client: AsyncWebClient
    team_id: str
    channel_id: str
    user_id: str
    trigger_id: str
    args: list[str]

    async def lookup(self, user_id: str) -> Mapping[str, Any] | None:
        return await user_lookup(self.client)(user_id)

    def here(self) -> Target:
        return Target(self.team_id, self.channel_id)


Handler = Callable[[Invocation], Awaitable[str]]

USAGE_HEADER = (
    '*Candor admin command* — `/candor <subcommand>`; quote long text, e.g. `"like this"`.\n'
    "`[#channel]` is the current channel unless you name one; `--workspace` (or `default`) "
    "targets the workspace default."
)


@dataclass(frozen=True)
class Subcommand:
    """One `/candor` subcommand: its name, how it is typed, who may run it, what runs it.

    `forms` are the ways to type it, each starting with `name` (`"kb top-k N [#channel]"`);
    `about` is one short phrase for the usage text. `admin_only=False` lets anyone run it
    (the handler may still check rights for some of its forms, as `usage @user` does).
    """

    name: str
    forms: tuple[str, ...]
    handler: Handler
    about: str = ""
    admin_only: bool = True

    def usage_line(self) -> str:
        """This subcommand's line in the usage text."""
        line = "• " + " · ".join(f"`{form}`" for form in self.forms)
        return f"{line} — {self.about}" if self.about else line


class Registry:
    """Every `/candor` subcommand, by name, in the order the usage text lists them."""

    def __init__(self, *groups: Iterable[Subcommand]) -> None:
        self._by_name: dict[str, Subcommand] = {}
        for group in groups:
            for sub in group:
                if sub.name in self._by_name:
                    raise ValueError(f"/candor {sub.name} is registered twice")
                if not sub.forms or any(form.split(" ", 1)[0] != sub.name for form in sub.forms):
                    raise ValueError(f"every form of /candor {sub.name} must start with its name")
                self._by_name[sub.name] = sub

    def __iter__(self) -> Iterator[Subcommand]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Subcommand | None:
        return self._by_name.get(name)

    @property
    def public(self) -> frozenset[str]:
        """The subcommands anyone may run; everything else is for admins."""
        return frozenset(sub.name for sub in self if not sub.admin_only)

    def usage(self) -> str:
        """The usage text: the header, then one line per subcommand, then who may run what."""
        lines = [USAGE_HEADER, *(sub.usage_line() for sub in self)]
        public = [f"`{name}`" for name in sorted(self.public)]
        anyone = ", ".join(public[:-1]) + " and " + public[-1] if len(public) > 1 else public[0]
        lines.append(f"Anyone may run {anyone}; everything else is for admins.")
        return "\n".join(lines)


# --- targets --------------------------------------------------------------------------


async def pop_target(call: Invocation, *, skip: int = 0) -> Target:
    """Remove the channel or workspace argument from `call.args` and resolve it."""
    found: list[tuple[int, str]] = []
    for index, arg in enumerate(call.args):
        if index < skip:
            continue
        if (
            arg.lower() in _WORKSPACE_WORDS
            or _CHANNEL_MENTION.match(arg)
            or _CHANNEL_ID.match(arg)
            or _CHANNEL_NAME.match(arg)
        ):
            found.append((index, arg))
    if len(found) > 1:
        raise InvalidValue("Name one channel (or `--workspace`) per command.")
    if not found:
        return call.here()
    index, arg = found[0]
    del call.args[index]
    if arg.lower() in _WORKSPACE_WORDS:
        return Target.default(call.team_id)
    mention = _CHANNEL_MENTION.match(arg)
    if mention:
        return Target(call.team_id, mention.group(1))
    if _CHANNEL_ID.match(arg):
        return Target(call.team_id, arg)
    return Target(call.team_id, await _channel_by_name(call.client, arg[1:]))


async def _channel_by_name(client: AsyncWebClient, name: str) -> str:
    explain = (
        f"I could not find #{name}. Pick the channel from Slack's autocomplete so its link "
        "is sent, or give the channel ID (channel details → About, e.g. `C0123ABCD`)."
    )
    cursor = ""
    for _page in range(_MAX_NAME_PAGES):
        try:
            response = await client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor or None,
            )
        except SlackApiError:
            raise InvalidValue(explain) from None
        for channel in response.get("channels") or []:
            if channel.get("name") == name:
                return str(channel["id"])
        cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            break
    raise InvalidValue(explain)


def user_arg(raw: str) -> str:
    """A user ID from `<@U123|name>` or `U123`; `@name` cannot be resolved reliably."""
    mention = _USER_MENTION.match(raw)
    if mention:
        return mention.group(1)
    if _USER_ID.match(raw):
        return raw
    raise InvalidValue(
        f"`{raw}` is not a user I can identify: pick the person from Slack's @-autocomplete "
        "(so their link is sent) or give their member ID (`U0123ABCD`)."
    )


def one_value(call: Invocation, usage: str) -> str:
    """The single remaining argument, or a usage error naming `usage`."""
    if len(call.args) != 1:
        raise InvalidValue(f"Usage: `{usage}`")
    return call.args[0]


async def set_values(call: Invocation, target: Target, action: str, values: dict[str, Any]) -> str:
    """Change channel settings through `bot.admin.service` (audited) and describe the change."""
    change = await call.admin.set_values(
        actor_id=call.user_id, target=target, action=action, values=values
    )
    return views.render_change(change)


def setting_command(
    action: str, field: str, usage: str, parse: Callable[[str, Settings], Any]
) -> Handler:
    """`/candor ACTION VALUE [#channel]`: parse one value and set `field` on the target.

    `parse(raw, settings)` raises `InvalidValue` saying what is allowed; `usage` is the
    syntax shown when the value is missing. The change is audited as `action`.
    """

    async def cmd(call: Invocation) -> str:
        target = await pop_target(call)
        value = parse(one_value(call, usage), call.deps.settings)
        return await set_values(call, target, action, {field: value})

    return cmd

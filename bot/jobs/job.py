"""What a scheduled job is: a name, a coroutine taking `Deps`, a cron schedule, a line
on what it does (below both the registry and the runner)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.deps import Deps

JobFn = Callable[[Deps], Awaitable[object]]
OFF = "off"


@dataclass(frozen=True)
class Job:
    """A scheduled job: its name, what it runs, when, and one line on what it does."""

    name: str
    run: JobFn
    cron: str
    about: str

    @property
    def enabled(self) -> bool:
        return self.cron.strip().lower() != OFF

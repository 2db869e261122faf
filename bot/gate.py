"""A first come, first served gate with a lane for work already under way.

The database uses it as its writer gate (`Database.write`): how many write transactions
one process runs at once, and in what order. The Slack surface uses it to admit answers
into their preparation (`handlers.slack_io.Admission`).

Writers get in in the order they came, with one exception: a transaction that finishes
work already under way, which an answer waits on (its reservation: `ahead=True`), goes
before ones that start new work (on SQLite a new message's claim). What is written after
the answer is shown (its bill, stored turns and the claim's mark) waits its turn like new
work: nobody waits on it, and letting it go first held the next messages back. On
Postgres the claim and the reservation are single statements that commit by themselves,
outside the gate (`Database.one_statement`), so there the gate holds the bills and stored
turns. In a burst of messages a strict queue serves every claim before the first
reservation (each answer queues twice, each time behind the whole burst), so the first
answers reach the model only after the last claim; letting the answers already claimed
go first turns a burst into a stream.
It cannot starve new work: every transaction that goes ahead belongs to a message whose
claim already got in, a few per message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairGate:
    """At most `capacity` holders at once; see the module docstring."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a gate lets at least one holder in")
        self.capacity = capacity
        self._free = capacity
        # Waiting: those going ahead first, then the others, each in arrival order.
        self._ahead: deque[asyncio.Future[None]] = deque()
        self._behind: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """How many more holders it lets in now."""
        return self._free

    @asynccontextmanager
    async def enter(self, *, ahead: bool = False) -> AsyncIterator[None]:
        await self.acquire(ahead=ahead)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, *, ahead: bool = False) -> None:
        """Wait for a place; each `acquire` is paired with one `release`."""
        if self._free > 0 and not self._ahead and (ahead or not self._behind):
            self._free -= 1
            return
        queue = self._ahead if ahead else self._behind
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # let in, then cancelled before it ran: pass the place on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
            raise

    def release(self) -> None:
        for queue in (self._ahead, self._behind):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the place goes straight to it
                    return
        self._free += 1

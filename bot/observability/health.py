"""Readiness: can this replica do its work? (`GET /readyz`; `/healthz` is liveness only.)

Ready means the database answers and is migrated to the revision this code needs, and the
knowledge store answers (when there is one). Each check is bounded in time, and a failure
is reported as one sentence without the exception's text (it could carry a URL with a
password).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.deps import Deps

log = logging.getLogger(__name__)
CHECK_SECONDS = 3.0


@dataclass
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


async def readiness(deps: Deps, *, limit: float = CHECK_SECONDS) -> Readiness:
    """Check the database (reachable, migrated) and the knowledge store (reachable)."""
    from bot.db.engine import current_revision, head_revision

    checks: dict[str, str] = {}
    try:
        revision = await asyncio.wait_for(current_revision(deps.db), limit)
    except Exception as exc:
        log.warning("Readiness: the database did not answer (%s).", type(exc).__name__)
        checks["database"] = "unreachable"
    else:
        head = head_revision()
        checks["database"] = "ok" if revision == head else f"not migrated to {head}"
    checks["knowledge"] = await _knowledge(deps, limit)
    return Readiness(ok=all(v in ("ok", "none") for v in checks.values()), checks=checks)


async def _knowledge(deps: Deps, limit: float) -> str:
    from bot.kb import ScopedKnowledge

    if not isinstance(deps.knowledge, ScopedKnowledge):
        return "none"
    try:
        await asyncio.wait_for(deps.knowledge.kb.store.count(), limit)
    except Exception as exc:
        log.warning("Readiness: the knowledge store did not answer (%s).", type(exc).__name__)
        return "unreachable"
    return "ok"

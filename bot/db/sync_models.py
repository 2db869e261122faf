"""Knowledge sources registered for re-sync (`--sync`), and how their last sync went.

`knowledge_syncs` holds one row per registered source:

- `kind` is `slack_channel` (registered with `/candor kb ingest #c --sync`) or `folder`
  (`candor kb add DIR --sync`); `target` is the channel id or the folder's absolute path.
- `scope` and `private` are the knowledge scope the source is ingested into.
- `last_synced_at` is when the last successful sync started, by the injected clock: for a
  Slack channel it is also the cut-off of the next sync (`conversations.history`
  `oldest=`), so each sync reads only the messages posted since.
- `state` is the folder's files as last ingested (`{path: [mtime_ns, size]}`), so a sync
  reads only the files that changed and removes the sources of files that disappeared.
- `last_error` is the last failed sync's one-line reason (cleared by the next success).

Created by migration `0011_sync`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, utcnow

SYNC_SLACK_CHANNEL = "slack_channel"
SYNC_FOLDER = "folder"


class KnowledgeSyncRow(Base):
    """A knowledge source the `kb_sync` job re-ingests incrementally."""

    __tablename__ = "knowledge_syncs"
    __table_args__ = (UniqueConstraint("kind", "target", name="uq_knowledge_syncs_target"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(1000))
    scope: Mapped[str] = mapped_column(String(64))
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    #: What people read in listings: `#general`, or the folder path.
    label: Mapped[str | None] = mapped_column(String(300), default=None)
    workspace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    registered_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_result: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

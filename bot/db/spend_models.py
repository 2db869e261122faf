"""Tables behind per-user token spend: the ledger, reservations, budgets, counters, prices.

Money is stored as integer micro-USD (1 USD = 1_000_000) everywhere, so sums are exact
and every database agrees on them. Migration `0002_spend` creates these tables.

- `spend_ledger` is append-only: one row per billable call once it is over (chat or
  embedding). A partial unique index on `(call_id, kind)` for settled rows means a call
  (a Slack event) is charged at most once, whatever retries happen.
- `spend_reservations` is the state machine of one chat call: held -> settled | released.
  A released reservation may be re-armed by a retry of the same event.
- `budget_usage` is one counter row per user and budget period: `spent` (settled) and
  `held` (reserved, not yet settled). Reserving is one conditional upsert of this row,
  which row-locks it on Postgres, so concurrent requests of one user serialize there.
- `spend_budgets` holds the default budget (user `*`) and per-user overrides.
- `model_prices` holds admin price overrides over the price table shipped in the package;
  `image_prices` the same per generated image.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, utcnow

#: The `spend_budgets.user_id` of the default (everyone's) budget.
DEFAULT_BUDGET_KEY = "*"

_BIGID = BigInteger().with_variant(Integer, "sqlite")


class SpendLedgerRow(Base):
    """One billable call, written once it is over; never updated."""

    __tablename__ = "spend_ledger"
    __table_args__ = (
        Index(
            "uq_spend_ledger_charge",
            "call_id",
            "kind",
            unique=True,
            sqlite_where=text("status = 'settled'"),
            postgresql_where=text("status = 'settled'"),
        ),
        Index("ix_spend_ledger_user_time", "user_id", "created_at"),
        Index("ix_spend_ledger_time", "created_at"),
    )

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    model: Mapped[str] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    price_version: Mapped[str] = mapped_column(String(64))
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SpendReservationRow(Base):
    """Money held for one chat call between the reserve and its settle or release."""

    __tablename__ = "spend_reservations"
    __table_args__ = (
        UniqueConstraint("call_id", "kind", name="uq_spend_reservations_call"),
        Index("ix_spend_reservations_status", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    period_key: Mapped[str] = mapped_column(String(32))
    amount_micro_usd: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BudgetUsageRow(Base):
    """A user's spent and held money in one budget period (the row reserves lock)."""

    __tablename__ = "budget_usage"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    spent_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    held_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    # The threshold notice goes to the user once and the alert to admins once per period.
    user_warned: Mapped[bool] = mapped_column(Boolean, default=False)
    admins_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SpendBudgetRow(Base):
    """The default budget (user `*`, with its period) or one user's override.

    `limit_micro_usd` 0 means unlimited. `period` is only read from the default row.
    """

    __tablename__ = "spend_budgets"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    limit_micro_usd: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str | None] = mapped_column(String(16), default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)


class ModelPriceRow(Base):
    """An admin's price for a model, in micro-USD per 1M tokens; beats the shipped table."""

    __tablename__ = "model_prices"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    input_micro_usd_per_m: Mapped[int] = mapped_column(BigInteger)
    cached_input_micro_usd_per_m: Mapped[int] = mapped_column(BigInteger)
    output_micro_usd_per_m: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)


class ImagePriceRow(Base):
    """An admin's price for one generated image of a model, in micro-USD (0012_daily)."""

    __tablename__ = "image_prices"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    micro_usd_per_image: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(32), default=None)

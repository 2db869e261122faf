"""The reservation of a call and its hold on the budget in one statement, on Postgres.

`candor_hold_call(...)` does what `bot.spend.ledger.hold_for_call` does as two or three
statements in the caller's transaction (claim the reservation, re-arming a released
one, then hold its amount on the user's counter if the limit allows), as one function
call: atomic by itself, so on Postgres a reserve needs no transaction around it (one
round trip instead of BEGIN, two statements and COMMIT, and no place among the writers).
A refused hold leaves nothing behind: the block's subtransaction is rolled back.

It returns one row `(reservation_id, spent, outcome)`:
- `held`: the reservation's id and the user's settled spend;
- `refused`: no id, and the settled spend as it stands (the budget cannot cover it);
- `held` or `settled` with no id: the call is a duplicate; `outcome` is the existing
  reservation's status.

SQLite has no functions of this kind and keeps the statements (its writers serialize, and
a statement there costs no round trip). A later change to these tables, or to the hold's
rules, replaces the function in a new migration.

Revision ID: 0013_hold_function
Revises: 0012_daily
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0013_hold_function"
down_revision = "0012_daily"
branch_labels = None
depends_on = None

HOLD_CALL = """
CREATE OR REPLACE FUNCTION candor_hold_call(
    p_call_id varchar, p_kind varchar, p_workspace_id varchar, p_channel_id varchar,
    p_user_id varchar, p_model varchar, p_period_key varchar, p_amount bigint,
    p_limit bigint, p_now timestamptz,
    OUT reservation_id bigint, OUT spent bigint, OUT outcome varchar
) LANGUAGE plpgsql AS $fn$
BEGIN
    BEGIN
        INSERT INTO spend_reservations AS r (
            call_id, kind, workspace_id, channel_id, user_id, model, period_key,
            amount_micro_usd, status, reason, created_at, updated_at
        ) VALUES (
            p_call_id, p_kind, p_workspace_id, p_channel_id, p_user_id, p_model,
            p_period_key, p_amount, 'held', NULL, p_now, p_now
        )
        ON CONFLICT (call_id, kind) DO NOTHING
        RETURNING r.id INTO reservation_id;
        IF reservation_id IS NULL THEN
            -- A failed attempt released it: this attempt re-arms it.
            UPDATE spend_reservations AS r SET
                workspace_id = p_workspace_id, channel_id = p_channel_id,
                user_id = p_user_id, model = p_model, period_key = p_period_key,
                amount_micro_usd = p_amount, status = 'held', reason = NULL,
                created_at = p_now, updated_at = p_now
            WHERE r.call_id = p_call_id AND r.kind = p_kind AND r.status = 'released'
            RETURNING r.id INTO reservation_id;
        END IF;
        IF reservation_id IS NULL THEN
            SELECT r.status INTO outcome FROM spend_reservations AS r
            WHERE r.call_id = p_call_id AND r.kind = p_kind;
            RETURN;
        END IF;
        IF p_limit IS NOT NULL AND p_amount > p_limit THEN
            RAISE EXCEPTION USING ERRCODE = 'CDR01';
        END IF;
        INSERT INTO budget_usage AS u (
            user_id, period_key, spent_micro_usd, held_micro_usd, user_warned,
            admins_alerted, updated_at
        ) VALUES (p_user_id, p_period_key, 0, p_amount, false, false, p_now)
        ON CONFLICT (user_id, period_key) DO UPDATE SET
            held_micro_usd = u.held_micro_usd + p_amount, updated_at = p_now
        WHERE p_limit IS NULL
            OR u.spent_micro_usd + u.held_micro_usd + p_amount <= p_limit
        RETURNING u.spent_micro_usd INTO spent;
        IF spent IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'CDR01';
        END IF;
        outcome := 'held';
    EXCEPTION WHEN SQLSTATE 'CDR01' THEN
        -- Refused: the reservation written above is rolled back with the block.
        reservation_id := NULL;
        SELECT u.spent_micro_usd INTO spent FROM budget_usage AS u
        WHERE u.user_id = p_user_id AND u.period_key = p_period_key;
        spent := COALESCE(spent, 0);
        outcome := 'refused';
    END;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(HOLD_CALL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS candor_hold_call("
            "varchar, varchar, varchar, varchar, varchar, varchar, varchar, bigint, bigint,"
            " timestamptz)"
        )

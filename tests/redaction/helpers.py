"""Values to withhold, a knowledge source that always finds one chunk, and a row dump."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.engine import Database
from bot.db.models import Base
from bot.ports import RetrievalQuery, RetrievedHit

# Secrets (withheld by default)
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"
OPENAI_KEY = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
URL_PASSWORD = "s3cr3t-Pa55"
# Personal data (withheld when CANDOR_REDACT_PII / `redact pii on`)
EMAIL = "ada.lovelace@example.com"
CARD = "4111 1111 1111 1111"  # Visa's test number: passes Luhn
CARD_DIGITS = "4111111111111111"
NOT_A_CARD = "4111 1111 1111 1112"  # 16 digits, fails Luhn
IBAN = "DE89 3704 0044 0532 0130 00"
SSN = "123-45-6789"

SECRETS = (SLACK_TOKEN, OPENAI_KEY, AWS_KEY, GITHUB_TOKEN, URL_PASSWORD)
PERSONAL = (EMAIL, CARD, CARD_DIGITS, IBAN, SSN)


class OneChunk:
    """A knowledge source that finds the same chunk for every question."""

    def __init__(self, text: str, title: str = "Runbook") -> None:
        self.hit = RetrievedHit(
            index=1,
            text=text,
            title=title,
            link="https://wiki.test/runbook",
            source="wiki",
            scope="workspace",
            score=0.9,
        )
        self.queries: list[str] = []

    async def retrieve(self, query: RetrievalQuery) -> list[RetrievedHit]:
        self.queries.append(query.query)
        return [self.hit]


async def every_row(db: Database) -> str:
    """Every row of every table, as text: what the database holds after a test."""
    parts: list[str] = []
    async with db.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(parts)


def assert_none_in(haystack: str, values: tuple[str, ...]) -> None:
    leaked = [v for v in values if v in haystack]
    assert leaked == [], f"withheld values leaked: {leaked}"

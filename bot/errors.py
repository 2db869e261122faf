"""User-facing errors: each carries the one sentence a person sees.

Surfaces (Slack handlers, the CLI) show `user_message` and nothing else; the exception's
own text is for logs. Never put secrets or raw upstream errors in `user_message`.
"""

from __future__ import annotations


class CandorError(Exception):
    """Base for failures a user is told about in one clear sentence."""

    user_message = "Something went wrong on Candor's side; please try again."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or user_message or self.user_message)
        self.detail = detail
        if user_message is not None:
            self.user_message = user_message


class ChannelDisabled(CandorError):
    user_message = (
        "Candor is turned off in this channel; an admin can turn it on with `/candor enable`."
    )


class MessageTooLong(CandorError):
    user_message = (
        "Your message is too long for the model's context window; please shorten it or split it up."
    )


class StorageUnavailable(CandorError):
    user_message = "Candor cannot reach its database right now; please try again in a minute."


class DeliveryFailed(CandorError):
    """The chat surface (Slack) could not show the answer: not the model's fault.

    Raised by a surface's answer sink (e.g. `handlers.slack_io.Reply`) once it has tried
    every way it has (retrying after `Retry-After`, updating, posting anew). The core keeps
    the answer and its billing going; the surface tries once more when the answer is done.
    """

    user_message = "Candor could not post the answer in Slack; please try again in a moment."

    def __init__(
        self,
        detail: str = "",
        *,
        code: str = "",
        retry_after: float | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(detail or code, user_message=user_message)
        self.code = code
        self.retry_after = retry_after


class DatabaseNotReady(CandorError):
    """The configured database cannot be used: unreachable, or not migrated to this code.

    Found at startup (`bot.db.engine.ensure_ready`), before any Slack connection or LLM
    call; the sentence names `DATABASE_URL` or the command to run.
    """

    user_message = "Candor's database is not ready; run `candor db upgrade`."


class EmbeddingUnavailable(CandorError):
    """The knowledge base's embeddings API cannot be used as configured (names the setting)."""

    user_message = (
        "Candor could not embed text for the knowledge base; check OPENAI_BASE_URL and "
        "OPENAI_API_KEY, or set CANDOR_KB_EMBEDDER=sparse to embed offline."
    )

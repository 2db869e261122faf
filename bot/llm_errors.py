"""The LLM's failures as the one sentence a person sees.

Every failure of a call becomes an `LLMError` subclass whose `user_message` is that
sentence; `translate` picks it from what failed, whichever transport saw it: an
`UpstreamError` from the gateway's own streaming session (`bot.llm_http`) or an openai
exception from the SDK (calls that are not streamed). The status decides (429: rate
limited, or unavailable when the body says `insufficient_quota`; 401/403: the key;
404: the model; 400: the context window, tools, or a bad request; any other: the server
is unavailable), and the text it matches is never shown nor logged.
"""

from __future__ import annotations

import openai

from bot.errors import CandorError
from bot.llm_http import UpstreamError


class LLMError(CandorError):
    """An LLM failure with the one sentence a user sees.

    `partial_text` is what the model had streamed before the failure ("" when it failed
    before the first token): the caller bills it as an estimate.
    """

    user_message = "The language model failed to answer; please try again in a moment."
    partial_text: str = ""


class LLMRateLimited(LLMError):
    user_message = "The language model is rate limited right now; please try again in a minute."


class LLMTimeout(LLMError):
    user_message = "The language model took too long to answer; please try again."


class LLMAuthFailed(LLMError):
    user_message = (
        "Candor could not sign in to the language model; an admin needs to check OPENAI_API_KEY."
    )


class LLMContextTooLong(LLMError):
    user_message = (
        "This conversation is too long for the model; start a new thread or ask a shorter question."
    )


class LLMModelNotFound(LLMError):
    user_message = (
        "The configured model is not available on the LLM server; an admin needs to pick another."
    )


class LLMUnavailable(LLMError):
    user_message = "The language model is unavailable right now; please try again in a few minutes."


class LLMToolsUnsupported(LLMError):
    """The server or model refused the request because it offered tools."""

    user_message = "The language model in this channel cannot use tools."


class LLMStreamCut(LLMError):
    """The server ended the stream mid-answer (connection dropped, no end of answer)."""

    user_message = "The language model's answer was cut off before it finished; please ask again."


class LLMUnreachable(LLMError):
    """Nothing answers at the LLM endpoint: a setup problem, not a passing outage."""

    user_message = (
        "Candor cannot connect to the language model; an admin needs to check OPENAI_BASE_URL."
    )


def unreachable_error(where: str, *, configured: bool) -> LLMUnreachable:
    """The sentence for a refused connection to `where` (host:port): start the server
    `OPENAI_BASE_URL` names, or (OpenAI itself) check the network."""
    if configured:
        message = (
            f"Candor cannot connect to the language model at OPENAI_BASE_URL ({where}); "
            "start that server or fix OPENAI_BASE_URL (`candor local-llm` runs one offline)."
        )
    else:
        message = (
            f"Candor cannot connect to the OpenAI API ({where}); check the network, or set "
            "OPENAI_BASE_URL to a server you can reach (`candor local-llm` runs one offline)."
        )
    return LLMUnreachable(f"connect failed: {where}", user_message=message)


def deadline_passed(seconds: float) -> LLMTimeout:
    return LLMTimeout(
        f"total deadline of {seconds:g} s passed",
        user_message=(
            f"The language model did not finish within {seconds:g} seconds, so Candor stopped "
            "waiting; please try again or ask for a shorter answer."
        ),
    )


def translate(exc: Exception) -> LLMError:
    """Map a failed call (an `UpstreamError` from our own transport, or an openai
    exception from the SDK's) to our typed error; the detail is for logs only."""
    failure = exc if isinstance(exc, UpstreamError) else _from_sdk(exc)
    detail = failure.name
    status = failure.status
    if failure.kind == "unreachable":
        return unreachable_error(failure.where, configured=failure.configured)
    if failure.kind == "timeout":
        return LLMTimeout(detail)
    if failure.kind == "connection":
        return LLMUnavailable(detail)
    if failure.kind != "status" or status is None:
        return LLMError(detail)
    if status == 429:
        if "insufficient_quota" in failure.body:
            return LLMUnavailable(detail + ": insufficient quota")
        return LLMRateLimited(detail)
    if status in (401, 403):
        return LLMAuthFailed(detail)
    if status == 404:
        return LLMModelNotFound(detail)
    if status == 400:
        text = failure.message.lower()
        if "context" in text and ("length" in text or "window" in text or "maximum" in text):
            return LLMContextTooLong(detail)
        if _rejects_tools(text):
            return LLMToolsUnsupported(detail + ": tools rejected")
        return LLMError(detail + ": bad request")
    return LLMUnavailable(f"{detail}: HTTP {status}")


def _from_sdk(exc: Exception) -> UpstreamError:
    """An openai exception as the failure our transport would have raised."""
    name = type(exc).__name__
    if isinstance(exc, openai.APIStatusError):
        body = str(exc.body or "")
        return UpstreamError("status", name, status=exc.status_code, message=str(exc), body=body)
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError("timeout", name)
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("connection", name)
    return UpstreamError("other", name)


def _rejects_tools(text: str) -> bool:
    """Whether a 400's message says the model or server does not take `tools`."""
    return "tool" in text and any(
        word in text for word in ("support", "not allowed", "unknown", "unrecognized", "invalid")
    )

